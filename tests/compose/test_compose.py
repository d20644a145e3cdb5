"""The compose stack, validated without Docker: structure, mounts, and the real checkers
(promtool on its Prometheus config, amtool on its Alertmanager config)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from dashboards.variables import LOKI_UID, PROMETHEUS_UID, TEMPO_UID
from stack.compose import COMPOSE, render

ROOT = COMPOSE.parent
SERVICES = {
    "inference", "agent", "alert-receiver", "prometheus", "alertmanager", "pushgateway",
    "loki", "tempo", "otel-collector", "grafana",
    "rabbitmq", "redis", "jobs-api", "fleet-worker",
}  # fmt: skip
#: Images whose container has a tool to run a health check with (python or busybox wget).
CHECKABLE = {
    "loglog:local",
    "prom/prometheus",
    "prom/alertmanager",
    "prom/pushgateway",
    "grafana/grafana",
    "rabbitmq",
    "redis",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def _mounts(service: dict) -> list[tuple[Path, str]]:
    """(host path, container path) of bind mounts (named volumes are skipped)."""
    found = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            found.append(((COMPOSE / source).resolve(), target))
    return found


def test_every_service_is_there_with_a_pinned_image(compose):
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image"


def test_every_mounted_file_exists(compose):
    """Every bind mount points at a file or directory that is in the repository."""
    for name, service in compose["services"].items():
        for host, _ in _mounts(service):
            assert host.exists(), f"{name} mounts {host}, which does not exist"
    build = compose["services"]["inference"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve().exists()


def test_health_checks_only_where_the_image_can_run_them(compose):
    """Loki 3 and the collector-contrib image have no shell, wget or curl: a health check
    there would never pass, so they have none; the others all have one."""
    for name, service in compose["services"].items():
        image = (
            service["image"].split(":")[0] if service["image"] != "loglog:local" else "loglog:local"
        )
        if image in CHECKABLE:
            assert "healthcheck" in service, f"{name} can and should have a health check"
        else:
            assert "healthcheck" not in service, (
                f"{name}: its image has no tool to run a health check"
            )


def test_prometheus_config_is_current_and_passes_promtool(compose, tmp_path):
    """The committed config is what the generator writes; with the container paths mapped
    to the repository's files, promtool check config accepts it (rules included)."""
    config_path = COMPOSE / "prometheus" / "prometheus.yml"
    assert config_path.read_text() == render(), "run: python -m stack.compose"
    if shutil.which("promtool") is None:
        pytest.skip("needs Debian's prometheus")
    mounts = dict((target, host) for host, target in _mounts(compose["services"]["prometheus"]))
    config = yaml.safe_load(config_path.read_text())
    rules_dir = mounts["/etc/prometheus/rules"]
    config["rule_files"] = [str(rules_dir / Path(pattern).name) for pattern in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["promtool", "check", "config", str(local)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rule files found" in result.stdout
    hosts = {
        target.split(":")[0]
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])  # http_sd jobs have none
        for target in sc["targets"]
    }
    assert hosts - {"localhost"} <= set(compose["services"]), (
        "every scrape target is a compose service"
    )


def test_alertmanager_config_passes_amtool_and_reaches_the_receiver_service(compose):
    mounts = dict((target, host) for host, target in _mounts(compose["services"]["alertmanager"]))
    config_path = mounts["/etc/alertmanager/alertmanager.yml"]
    if shutil.which("amtool"):
        result = subprocess.run(
            ["amtool", "check-config", str(config_path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    urls = [
        hook["url"]
        for receiver in yaml.safe_load(config_path.read_text())["receivers"]
        for hook in receiver.get("webhook_configs", [])
    ]
    assert urls and all(url.startswith("http://alert-receiver:9095/alerts/") for url in urls)
    assert "9095" in compose["services"]["alert-receiver"]["command"]


def test_grafana_is_provisioned_with_the_uids_the_dashboards_use(compose):
    """Datasource UIDs match the dashboards' variable defaults; the dashboards provider
    reads the directory the dashboard JSON is mounted at; Prometheus links exemplars to Tempo."""
    mounts = dict((target, host) for host, target in _mounts(compose["services"]["grafana"]))
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "loglog.yml").read_text())[
        "datasources"
    ]
    by_uid = {d["uid"]: d for d in datasources}
    assert set(by_uid) == {PROMETHEUS_UID, LOKI_UID, TEMPO_UID}
    for source in datasources:
        assert source["url"].split("//")[1].split(":")[0] in compose["services"]
    assert (
        by_uid[PROMETHEUS_UID]["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"]
        == TEMPO_UID
    )
    provider = yaml.safe_load((provisioning / "dashboards" / "loglog.yml").read_text())[
        "providers"
    ][0]
    assert provider["type"] == "file"
    assert mounts[provider["options"]["path"]] == (ROOT / "dashboards" / "json").resolve()


def test_the_collector_pipelines_are_consistent_and_point_at_services(compose):
    config = yaml.safe_load((COMPOSE / "otel-collector" / "config.yml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    for exporter in config["exporters"].values():
        host = exporter["endpoint"].split("//")[-1].split(":")[0]
        assert host in compose["services"]
    inference_env = compose["services"]["inference"]["environment"]
    assert inference_env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector:4318")
    assert inference_env["LOGLOG_LOKI_URL"] == "http://loki:3100"


def test_the_image_contains_every_package_the_distribution_installs():
    """The Dockerfile copies each top-level package pyproject.toml ships."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for pattern in packages:
        name = pattern.rstrip("*")
        assert f"COPY {name} ./{name}" in dockerfile, name


def test_loglog_services_run_unprivileged_and_the_control_plane_needs_a_token(compose):
    """No loglog container runs as root, and the inference server, bound to 0.0.0.0,
    gets its bearer token from a compose secret (before: root, and no authentication)."""
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and "useradd" in dockerfile
    for name in ("inference", "agent", "alert-receiver"):
        service = compose["services"][name]
        assert service["user"] == "10001:10001", name
        assert service["user"].split(":")[0] != "0"
    inference = compose["services"]["inference"]
    command = inference["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    token = command[command.index("--token-file") + 1]
    assert inference["secrets"] == ["loglog_token"]
    assert token == "/run/secrets/loglog_token"
    assert compose["secrets"]["loglog_token"]["file"] == "./loglog_token"
    ignored = (COMPOSE.parent / ".gitignore").read_text().splitlines()
    assert "compose/loglog_token" in ignored, "the token must never be committed"
