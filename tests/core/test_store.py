"""The artifact store, against the local folder backend and a real S3-protocol server on loopback."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc

import pytest

from ganworks.errors import ObjectNotFoundError, StoreAuthError, StoreConfigError, StoreUnavailableError
from ganworks.settings import StoreSettings
from ganworks.store import open_store, parse_store_url
from tests.flakyfront import FlakyFront
from tests.s3server import free_port, start_s3

BIG = 50 * 1024 * 1024


def _write_random_file(path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 1 << 20))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def _sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_50mb_object_round_trips_without_being_held_whole_in_memory(store, tmp_path):
    src, dst = tmp_path / "big.bin", tmp_path / "back.bin"
    expected = _write_random_file(src, BIG)

    tracemalloc.start()
    store.put_file("blobs/big.bin", src)
    store.get_file("blobs/big.bin", dst)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert _sha256_file(dst) == expected
    assert store.stat("blobs/big.bin").size == BIG
    assert peak < BIG / 2, f"peak Python memory {peak / 2**20:.1f} MiB for a 50 MiB transfer"


def test_listing_returns_objects_under_a_prefix_in_key_order(store):
    for key in ("runs/b/LATEST", "runs/a/checkpoints/000000002/manifest.json", "runs/a/LATEST", "other/x"):
        store.put_bytes(key, b"x")

    keys = [info.key for info in store.list("runs/")]

    assert keys == ["runs/a/LATEST", "runs/a/checkpoints/000000002/manifest.json", "runs/b/LATEST"]


def test_listing_one_level_shows_folders(store):
    store.put_bytes("runs/a/LATEST", b"1")
    store.put_bytes("runs/b/LATEST", b"1")

    assert [info.key for info in store.list("runs/", recursive=False)] == ["runs/a/", "runs/b/"]


def test_stat_reports_size_and_a_changed_etag_after_overwrite(store):
    first = store.put_bytes("k/v", b"abc")
    time.sleep(0.01)
    second = store.put_bytes("k/v", b"abcd")

    assert (first.size, second.size) == (3, 4)
    assert first.etag != second.etag


def test_delete_removes_an_object_and_missing_objects_raise_not_found(store):
    store.put_bytes("k/v", b"abc")
    store.delete("k/v")
    store.delete("k/v")  # deleting twice is fine

    with pytest.raises(ObjectNotFoundError, match="k/v"):
        store.get_bytes("k/v")
    assert not store.exists("k/v")


@pytest.mark.parametrize("key", ["/abs", "../escape", "a/../../b", "a//b", ""])
def test_keys_that_could_escape_the_store_are_refused(store, key):
    with pytest.raises(StoreConfigError, match="invalid store key"):
        store.put_bytes(key, b"x")


@pytest.mark.parametrize(
    "url, message",
    [
        ("s3://Bad_Bucket/x", "bucket name"),
        ("s3://ab/x", "bucket name"),
        ("gs://bucket/x", "unknown scheme"),
        ("file://host/path", "three slashes"),
        ("s3://user:pw@bucket/x", "not in the URL"),
        ("", "empty store URL"),
        ("http:/oops", "malformed"),
    ],
)
def test_malformed_store_urls_are_refused_with_the_accepted_forms(url, message):
    with pytest.raises(StoreConfigError, match=message):
        parse_store_url(url)


def test_a_plain_folder_path_opens_the_local_backend(tmp_path):
    store = open_store(str(tmp_path / "here"))

    assert store.url == (tmp_path / "here").resolve().as_uri()
    assert (tmp_path / "here").is_dir()


def test_s3_bucket_is_created_when_missing(s3):
    url = s3.new_bucket_url("fresh")
    store = open_store(url, settings=s3.store_settings())

    store.put_bytes("x", b"1")

    assert open_store(url, settings=s3.store_settings()).get_bytes("x") == b"1"


def test_unreachable_endpoint_fails_after_retrying_for_the_retry_budget_with_a_typed_error():
    settings = StoreSettings(s3_endpoint=f"http://127.0.0.1:{free_port()}", s3_access_key="k", s3_secret_key="s", retry_seconds=2.0)
    started = time.monotonic()

    with pytest.raises(StoreUnavailableError, match=r"did not answer .* within 2s.*GANWORKS_S3_ENDPOINT"):
        open_store("s3://some-bucket/x", settings=settings)
    # A lower bound only, true on any machine: the budget's backoff sleeps add up to it before the call gives up.
    assert time.monotonic() - started >= 2.0, "gave up before GANWORKS_RETRY_SECONDS had passed"


def test_503_answers_are_retried_until_the_endpoint_answers(s3):
    front = FlakyFront(s3.endpoint, failures=3, mode="503")
    try:
        store = open_store(s3.new_bucket_url(), settings=s3.store_settings(s3_endpoint=f"http://{front.endpoint}"))
        store.put_bytes("k", b"value")
        assert store.get_bytes("k") == b"value"
    finally:
        front.close()
    assert front.failed == 3, "every 503 was answered by a retry"


def test_a_request_left_unanswered_times_out_and_is_retried(s3, monkeypatch):
    import urllib3

    # The store's read timeout (60 s) cut to half a second; the retry that follows it is the store's own.
    real_timeout = urllib3.Timeout
    monkeypatch.setattr(urllib3, "Timeout", lambda connect, read: real_timeout(connect=connect, read=0.5))
    front = FlakyFront(s3.endpoint, failures=2, mode="silent")
    try:
        store = open_store(s3.new_bucket_url(), settings=s3.store_settings(s3_endpoint=f"http://{front.endpoint}"))
        store.put_bytes("k", b"value")
        assert store.get_bytes("k") == b"value"
    finally:
        front.close()
    assert front.failed == 2


@pytest.mark.s3
def test_wrong_credentials_raise_an_auth_error_that_names_the_settings_at_once():
    if os.environ.get("GANWORKS_TEST_S3_ENDPOINT"):
        endpoint = start_s3()
        endpoint.secret_key = "definitely-wrong-secret"
    else:
        endpoint = start_s3(enforce_auth=True)
    front, scheme = FlakyFront(endpoint.endpoint, failures=0), "https" if endpoint.secure else "http"
    try:
        with pytest.raises(StoreAuthError, match="GANWORKS_S3_SECRET_KEY"):
            open_store(endpoint.new_bucket_url(), settings=endpoint.store_settings(s3_endpoint=f"{scheme}://{front.endpoint}", retry_seconds=30.0))
    finally:
        front.close()
        endpoint.stop()
    # At once: the one refused request is not retried (a retry would send more within the 30 s budget). The front
    # reads request lines, which TLS hides.
    assert endpoint.secure or front.requests == 1, f"{front.requests} requests for one refused call"


def test_secret_key_is_masked_in_the_settings_repr(s3):
    settings = s3.store_settings()

    assert s3.secret_key not in repr(settings)


def test_secret_key_can_come_from_a_mounted_file(tmp_path):
    from ganworks.settings import load_settings

    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file\n")

    settings = load_settings(StoreSettings, env={"GANWORKS_S3_SECRET_KEY_FILE": str(secret_file)})

    assert settings.s3_secret_key == "from-the-file"


def test_store_reaches_s3_through_pyarrow_for_ray_checkpoints(s3_store):
    import pyarrow.fs

    fs, path = s3_store.pyarrow_filesystem("runs/r/train_state")
    with fs.open_output_stream(f"{path}/probe.txt") as out:
        out.write(b"hello")

    assert s3_store.get_bytes("runs/r/train_state/probe.txt") == b"hello"
    assert isinstance(fs, pyarrow.fs.S3FileSystem)
