"""The local orchestration configures each service only through GANWORKS_* variables that the service reads."""

from __future__ import annotations

import dataclasses

import orchestration.local as local
from tests.deploy.test_settings_env import _known_variables


@dataclasses.dataclass
class RecordedProcess:
    name: str
    argv: list[str]
    log_path: object
    env: dict[str, str]

    def start(self) -> "RecordedProcess":
        return self

    def stop(self, grace: float = 0) -> None:
        pass


def test_every_service_is_started_by_its_command_and_configured_by_variables_it_reads(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "ServiceProcess", RecordedProcess)
    monkeypatch.setattr(local, "wait_for_http", lambda *args, **kwargs: None)
    monkeypatch.setattr(local, "wait_for_grpc_health", lambda *args, **kwargs: None)
    system = local.LocalSystem(local.SystemOptions(store=str(tmp_path / "store"), run="r1", workdir=str(tmp_path)))

    system.start()

    commands = {name: process.argv[3:] for name, process in system.processes.items()}
    assert commands == {"trainer": ["train"], "generator": ["generator", "serve"], "evaluator": ["evaluator", "serve"]}
    set_vars = {key for process in system.processes.values() for key in process.env if key.startswith("GANWORKS_")}
    assert set_vars - _known_variables() == set()
    evaluator = system.processes["evaluator"].env
    assert evaluator["GANWORKS_EVALUATOR_GENERATOR"] == system.generator_address and evaluator["GANWORKS_EVALUATOR_RUNS"] == "r1"
    assert system.processes["trainer"].env["GANWORKS_TRAINER_CONDITIONAL"] == "true"


def test_a_service_refusing_a_setting_the_user_gave_names_the_users_flag_and_only_settings_the_user_can_change(tmp_path):
    system = local.LocalSystem(local.SystemOptions(store=str(tmp_path / "store"), run="r1", eval_samples=200, workdir=str(tmp_path)))
    system.logs.mkdir(parents=True, exist_ok=True)

    try:
        system.start_evaluator()  # the real service: it checks its settings at start and exits with status 2
    except RuntimeError:
        pass
    finally:
        system.stop()

    refused = system.refused_settings()
    assert refused.startswith("the evaluator refused its settings: --eval-samples 200 is smaller than kid.subset_size"), refused
    assert "GANWORKS_EVALUATOR_DEFAULT_NUM_SAMPLES" not in refused and "--num-samples" not in refused
    # The evaluator's --metrics is no flag of `ganworks demo`/`up`: its hint names the variable the services inherit.
    assert refused.endswith("leave kid out of GANWORKS_EVALUATOR_DEFAULT_METRICS") and "--metrics" not in refused, refused
