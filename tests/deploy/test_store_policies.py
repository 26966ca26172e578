"""The store policies the minio component installs (one per role) give each workload what it needs and no more.

A real S3 server on loopback (moto's, with IAM enforced) holds one user per role with the role's policy from
deploy/k8s/components/minio/policies/; each role then works through ganworks' own store code, as its pod would.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest

from ganworks.errors import StoreError
from ganworks.layout import eval_report_key, latest_key, reference_stats_key, rollout_key, snapshot_key, trainer_events_key, evaluator_events_key
from ganworks.rollout import PINNED, RolloutPolicy, write_policy
from ganworks.store.s3 import S3Store
from orchestration.processes import free_port
from ganworks.testing.s3local import spawn_moto, wait_moto_ready
from tests.deploy.tools import DEPLOY

ROLES = ("trainer", "generator", "evaluator", "rollout")
POLICIES = DEPLOY / "k8s" / "components" / "minio" / "policies"
BUCKET, PREFIX = "ganworks", "dev"  # the dev store the policies are written for (components/minio)
# moto authorizes a call by its API operation's name, where S3 IAM uses s3:ListBucket for HeadBucket and the
# listings, and s3:GetObject for HeadObject.
MOTO_NAMES = {"s3:ListBucket": ["s3:HeadBucket", "s3:ListObjects", "s3:ListObjectsV2"], "s3:GetObject": ["s3:HeadObject"]}


def _for_moto(document: dict) -> str:
    for statement in document["Statement"]:
        statement["Action"] = [name for action in statement["Action"] for name in [action, *MOTO_NAMES.get(action, [])]]
        # moto turns a Resource into a regular expression by replacing only `*`: spell IAM's `.` and `?` for it.
        statement["Resource"] = [r.replace(".", "\\.").replace("?", ".") for r in statement["Resource"]]
    return json.dumps(document)


@pytest.fixture(scope="module")
def stores():
    port = free_port()
    # The setup below (a bucket, then a user, its policy and its key per role) runs before IAM is enforced.
    process = spawn_moto(port, env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(1 + 3 * len(ROLES))})
    try:
        wait_moto_ready(port, process)
        setup = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", **setup)
        keys = {}
        for role in ROLES:
            iam.create_user(UserName=role)
            iam.put_user_policy(UserName=role, PolicyName=f"ganworks-{role}", PolicyDocument=_for_moto(json.loads((POLICIES / f"{role}.json").read_text())))
            keys[role] = iam.create_access_key(UserName=role)["AccessKey"]
        # Only now, with IAM enforced: each store checks the bucket as it opens, with its role's key.
        yield {role: S3Store(BUCKET, PREFIX, endpoint=f"127.0.0.1:{port}", access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"],
                             region="us-east-1", secure=False, retry_seconds=5) for role, key in keys.items()}
    finally:
        process.terminate()
        process.wait(10)


def _refused(store, key: str) -> bool:
    try:
        store.put_bytes(key, b"{}")
    except StoreError as exc:
        assert "AccessDenied" in str(exc), exc
        return True
    return False


def test_only_the_trainer_writes_snapshots_and_every_reader_reads_them(stores):
    stores["trainer"].put_bytes(snapshot_key("faces", 1, "manifest.json"), b"{}")
    stores["trainer"].put_bytes(latest_key("faces"), b"1")
    for role in ("generator", "evaluator", "rollout"):
        assert stores[role].get_bytes(latest_key("faces")) == b"1", role
        assert _refused(stores[role], latest_key("faces")), f"{role} could move LATEST"
        assert _refused(stores[role], snapshot_key("faces", 2, "generator.safetensors")), f"{role} could write a snapshot"


def test_the_generator_writes_nothing_at_all(stores):
    for key in (rollout_key("faces"), eval_report_key("faces", 1, "default"), reference_stats_key("digits", "inception-v3-tf", "clean", 100), "datasets/faces/x"):
        assert _refused(stores["generator"], key), key


def test_the_evaluator_writes_only_its_reports_statistics_extractors_and_own_events(stores):
    evaluator = stores["evaluator"]
    for key in (eval_report_key("faces", 1, "default"), reference_stats_key("digits", "inception-v3-tf", "clean", 100),
                "extractors/inception-v3-tf/manifest.json", evaluator_events_key("faces", 1, "default")):
        evaluator.put_bytes(key, b"{}")
    for key in (trainer_events_key("faces"), rollout_key("faces"), "datasets/faces/x"):
        assert _refused(evaluator, key), key


def test_the_rollout_job_writes_only_rollout_policies(stores):
    stores["trainer"].put_bytes(snapshot_key("faces", 1, "manifest.json"), b"{}")
    write_policy(stores["rollout"], "faces", RolloutPolicy(PINNED, stable=1))
    assert json.loads(stores["generator"].get_bytes(rollout_key("faces")))
    assert _refused(stores["rollout"], eval_report_key("faces", 1, "default"))
