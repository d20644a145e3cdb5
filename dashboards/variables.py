"""Template variables shared by the dashboards."""

from __future__ import annotations

from typing import Any

from .builder import datasource_variable, query_variable

PROMETHEUS_UID = "loglog-prometheus"
LOKI_UID = "loglog-loki"
TEMPO_UID = "loglog-tempo"


def prometheus() -> dict[str, Any]:
    return datasource_variable("datasource", "prometheus", PROMETHEUS_UID)


def loki() -> dict[str, Any]:
    return datasource_variable("loki", "loki", LOKI_UID)


def job() -> dict[str, Any]:
    return query_variable("job", "label_values(inference_model_info, job)", label="Job")


def instance() -> dict[str, Any]:
    return query_variable(
        "instance", 'label_values(inference_model_info{job=~"$job"}, instance)', label="Instance"
    )


def model() -> dict[str, Any]:
    return query_variable(
        "model", 'label_values(inference_model_info{job=~"$job"}, model)', label="Model"
    )


def stream() -> dict[str, Any]:
    return query_variable(
        "stream", 'label_values(inference_frames_total{job=~"$job"}, stream)', label="Stream"
    )


def gpu_instance() -> dict[str, Any]:
    return query_variable("node", "label_values(agent_gpus, instance)", label="Node")


def gpu() -> dict[str, Any]:
    return query_variable("gpu", 'label_values(gpu_info{instance=~"$node"}, gpu)', label="GPU")
