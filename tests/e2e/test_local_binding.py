"""`ganworks up`/`demo` start every service listening on loopback only, never on the machine's other interfaces."""

from __future__ import annotations

import pathlib

from orchestration.local import LocalSystem, SystemOptions


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::ffff:127.0.0.1, ::1


def test_the_generator_and_evaluator_of_a_local_system_listen_on_loopback_only(tmp_path):
    options = SystemOptions(store=f"file://{tmp_path / 'store'}", run="r", workdir=str(tmp_path / "work"))
    system = LocalSystem(options)
    system.logs.mkdir(parents=True)
    try:
        system.start_generator()
        system.start_evaluator()
        for name in ("generator_port", "generator_metrics_port", "evaluator_port", "evaluator_metrics_port"):
            addresses = _listening_addresses(system.ports[name])
            assert addresses and addresses <= LOOPBACK_HEX, f"{name} {system.ports[name]} listens on {addresses}"
    finally:
        system.stop(grace=5)


def test_the_local_trainer_serves_its_metrics_on_loopback(tmp_path, monkeypatch):
    system = LocalSystem(SystemOptions(store=f"file://{tmp_path / 'store'}", workdir=str(tmp_path / "work")))
    spawned = {}
    monkeypatch.setattr(system, "_spawn", lambda name, command, settings: spawned.setdefault(name, settings))  # Ray is not started here
    system.start_trainer()
    assert spawned["trainer"]["GANWORKS_TRAINER_METRICS_HOST"] == "127.0.0.1"
