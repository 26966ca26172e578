"""The compose trial: valid against the compose specification, pinned images, MinIO bootstrapped, monitoring wired."""

from __future__ import annotations


import yaml

from tests.deploy.tools import DEPLOY, run_tool

COMPOSE = DEPLOY / "compose" / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_specification():
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_third_party_images_are_pinned():
    for name, service in _compose()["services"].items():
        image = service["image"]
        if "${" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"service {name}: image {image} is not pinned"


def test_minio_is_healthy_before_the_bucket_is_made_and_used():
    services = _compose()["services"]
    assert services["minio"]["healthcheck"]["test"]
    bootstrap = services["minio-bootstrap"]
    assert bootstrap["depends_on"]["minio"]["condition"] == "service_healthy"
    bucket = services["generator"]["environment"]["GANWORKS_STORE"].removeprefix("s3://").split("/")[0]
    assert f"mc mb --ignore-existing trial/{bucket}" in " ".join(bootstrap["entrypoint"])
    for name in ("ray-head", "trainer", "generator", "evaluator-extractor"):
        assert services[name]["depends_on"]["minio-bootstrap"]["condition"] == "service_completed_successfully", name


def test_services_listen_on_the_contract_ports():
    services = _compose()["services"]
    assert services["generator"]["command"][:2] == ["generator", "serve"]
    assert ["--port", "50051", "--metrics-port", "9311"] == services["generator"]["command"][4:8]
    assert "9312" in services["evaluator"]["command"] and "generator:50051" in services["evaluator"]["command"]
    assert "ray://ray-head:10001" in services["trainer"]["command"]


def test_mounted_files_exist_and_monitoring_uses_the_shared_rules_and_dashboards():
    services = _compose()["services"]
    mounts = {}
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist"
                mounts[target] = path
    assert mounts["/etc/prometheus/rules"] == (DEPLOY / "monitoring" / "rules").resolve()
    assert mounts["/var/lib/grafana/dashboards/ganworks"] == (DEPLOY / "monitoring" / "dashboards").resolve()
    provider = yaml.safe_load((COMPOSE.parent / "grafana/provisioning/dashboards/ganworks.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/ganworks"


def test_compose_prometheus_config_is_valid_and_scrapes_every_component(tmp_path):
    config = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"trainer": ["ray-head:9310"], "generator": ["generator:9311"], "evaluator": ["evaluator:9312"]}
    # Check it with the rules at the path compose mounts them, so promtool also loads the rules.
    config["rule_files"] = [str(DEPLOY / "monitoring" / "rules" / "*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = run_tool("promtool", "check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_published_port_listens_on_loopback_only():
    # Ray's Jobs API runs any code it is sent and MinIO's console shows the data: none may face the host's network.
    published = {name: service.get("ports", []) for name, service in _compose()["services"].items()}
    assert any(published.values())
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"service {name} publishes {port} on every host interface"


def test_prometheus_cannot_be_reconfigured_or_shut_down_over_http():
    assert "--web.enable-lifecycle" not in _compose()["services"]["prometheus"]["command"]
