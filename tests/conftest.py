"""Fixtures shared by every test: a real S3-protocol server on loopback and stores of both kinds."""

from __future__ import annotations

import json
import logging
import os
import pathlib

import pytest

from tests.s3server import S3Endpoint, start_s3

# Tests share two cores; torch threads beyond that only contend.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# `make tools` puts the Fashion-MNIST files here when the Debian package is not installed system-wide.
_FASHION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "tools", "fashion-mnist")
if os.path.isdir(_FASHION):
    os.environ.setdefault("GANWORKS_FASHION_MNIST_DIR", _FASHION)

# Test files that share a package fixture too costly to start twice: tests/e2e's `live` system (two minutes on
# two cores). Under xdist's loadfile (tests/run_tests.py) one worker runs each of these groups whole.
SHARED_WORKER = {"tests/e2e/test_system.py": "tests/e2e live system", "tests/e2e/test_dashboards_real_data.py": "tests/e2e live system"}


# Each long test file's measured seconds (tests/tools/durations.py writes it from a run's JUnit XML): the longest
# start first, so the run does not end with one worker on a long file while the other idles.
DURATIONS = json.loads((pathlib.Path(__file__).parent / "durations.json").read_text())


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # xdist's own order (most tests first) would undo the one below


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SHARED_WORKER.get(scope, scope)

    return SharedFixtureScheduling(config, log)


def uses_s3(item: pytest.Item) -> bool:
    """The test asks for the S3-protocol server: the `s3` fixture (directly or through another fixture) or the s3 form of `store`."""
    callspec = getattr(item, "callspec", None)
    return "s3" in getattr(item, "fixturenames", ()) or (callspec is not None and callspec.params.get("store") == "s3")


def pytest_collection_modifyitems(config, items):
    """Marks every test that uses S3 with `s3` (so `-m "not s3"` leaves them out), skips `gpu` tests without CUDA,
    and puts the longest files first (DURATIONS; a file's tests keep their order)."""
    items.sort(key=lambda item: -DURATIONS.get(item.nodeid.split("::", 1)[0], 0.0))  # stable: ties keep their order
    cuda = None
    for item in items:
        if uses_s3(item) and not item.get_closest_marker("s3"):
            item.add_marker(pytest.mark.s3)
        if item.get_closest_marker("gpu"):
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False); on a GPU machine `make gpu-check` runs these"))


# The credentials and tokens the tests hand to the services: none may ever appear in a log.
TEST_SECRETS = ("testing-secret", "s3cret-token-for-tests", "evaluator-test-token", "evaluator-token-for-tests", "fuzz-token-0123456789",
                os.environ.get("GANWORKS_TEST_S3_SECRET_KEY", ""))


def secrets_in(text: str) -> list[str]:
    return [secret for secret in TEST_SECRETS if len(secret) >= 4 and secret in text]


class _SecretWatch(logging.Handler):
    """Sees every log line of the in-process servers as the CLI's handler would write it (after redaction)."""

    def __init__(self):
        from ganworks.telemetry import RedactSecrets

        super().__init__()
        self.addFilter(RedactSecrets())
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        if secrets_in(line):
            self.leaks.append(line[:300])


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory):
    """After the session: no service's log (the files the process, fault and end-to-end tests write) holds a test secret."""
    watch = _SecretWatch()
    logging.getLogger().addHandler(watch)
    yield
    logging.getLogger().removeHandler(watch)
    leaks = [f"in-process log: {line}" for line in watch.leaks]
    for path in pathlib.Path(tmp_path_factory.getbasetemp()).rglob("*.log"):
        found = secrets_in(path.read_text(errors="replace")) if path.is_file() else []
        leaks += [f"{path}: holds a test secret ({len(secret)} characters)" for secret in found]
    assert not leaks, "secrets appeared in logs:\n" + "\n".join(leaks[:10])


@pytest.fixture(scope="session")
def s3() -> S3Endpoint:
    endpoint = start_s3()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def local_store(tmp_path):
    from ganworks.store import open_store

    return open_store(f"file://{tmp_path / 'store'}")


@pytest.fixture
def s3_store(s3):
    from ganworks.store import open_store

    return open_store(s3.new_bucket_url(), settings=s3.store_settings())


@pytest.fixture(params=["local", "s3"])
def store(request):
    """Each store test runs against the local folder backend and a real S3 endpoint."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(scope="session")
def ray_cluster(s3):
    """One local Ray cluster for the whole session (starting one takes many seconds): 2 CPUs, no dashboard.

    Its workers find the test S3 server's keys in their environment, as workers of a real cluster find them in
    their pods' env or *_FILE mounts: ganworks never sends credentials through Ray. The test process's own
    environment stays without them.
    """
    import ray

    credentials = {k: v for k, v in s3.env().items() if k.endswith(("_ACCESS_KEY", "_SECRET_KEY"))}
    saved = {k: os.environ.get(k) for k in credentials}
    os.environ.update(credentials)  # the raylet, and so every worker, inherits the environment of ray.init
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def fitted_store(tmp_path_factory) -> str:
    """One local store whose digits classifier (16 px, one quick epoch) is fitted once for the whole session.

    The tests that bring a whole system up (`ganworks demo`/`up`, the soak) put their runs in it: the evaluator finds
    the classifier instead of fitting it, and the reference statistics the first evaluator computes serve the rest.
    """
    from tests.faults.harness import fit_classifier

    path = str(tmp_path_factory.mktemp("fitted-store"))
    fit_classifier(path, image_size=16)
    return path
