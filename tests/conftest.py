"""Fixtures shared by every test: a real S3-protocol server on loopback and stores of both kinds."""

from __future__ import annotations

import os

import pytest

from tests.s3server import S3Endpoint, start_s3

# Tests share two cores; torch threads beyond that only contend.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# `make tools` puts the Fashion-MNIST files here when the Debian package is not installed system-wide.
_FASHION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "tools", "fashion-mnist")
if os.path.isdir(_FASHION):
    os.environ.setdefault("GANWORKS_FASHION_MNIST_DIR", _FASHION)


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
def ray_cluster():
    """One local Ray cluster for the whole session (starting one takes many seconds): 2 CPUs, no dashboard."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()
