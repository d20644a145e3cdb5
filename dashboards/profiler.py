"""Pipeline profiler — for developers: which stage is slow, is the model fed, is the GPU busy."""

from __future__ import annotations

from typing import Any

from alerts.config import Config

from . import variables as v
from .builder import Dashboard, panel, prom, query_variable, thresholds, timeseries

UID = "loglog-pipeline"
SEL = 'job=~"$job", instance=~"$instance"'


def build(cfg: Config) -> dict[str, Any]:
    d = Dashboard(
        UID,
        "loglog · Pipeline profiler",
        "Per-stage latency, utilization and queues, the bottleneck verdict, batching, and efficiency against the model's own capacity.",
        ["loglog", "developers"],
        [v.prometheus(), v.job(), v.instance(), v.model(), _stage_variable()],
    )
    d.row("Where the time goes")
    d.add(
        timeseries(
            "Stage latency p50 / p99", "Time one call of each stage takes (a batch for infer). Click an exemplar dot to open its trace.", "s",
            [prom(f'histogram_quantile(0.99, sum by (stage, le) (rate(inference_stage_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99 {{stage}}", exemplar=True),
             prom(f'histogram_quantile(0.5, sum by (stage, le) (rate(inference_stage_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50 {{stage}}")],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        panel(
            "heatmap", "Stage duration heatmap", "Distribution of one stage's call durations over time (pick the stage in the Stage variable: each stage has buckets of its own, ×1.1 apart across its usual range).", "s",
            [prom(f'sum by (le) (increase(inference_stage_duration_seconds_bucket{{{SEL}, stage="$stage"}}[$__rate_interval]))', "{{le}}", fmt="heatmap")],
            options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Stage utilization",
            "Busy time ÷ (wall time × workers) per stage. The bottleneck sits near 100 % with a full queue in front of it.",
            "percentunit",
            [
                prom(
                    f"sum by (stage) (rate(inference_stage_busy_seconds_total{{{SEL}}}[$__rate_interval])) / sum by (stage) (inference_stage_workers{{{SEL}}})",
                    "{{stage}}",
                )
            ],
            max=1,
        ),
        w=12,
    )
    d.add(
        panel(
            "bargauge", "Bottleneck now", "1 for the stage that limits throughput according to the server's verdict; 'input' means the offered load does (the engine has spare capacity).", "short",
            [prom(f"max by (stage) (inference_pipeline_bottleneck{{{SEL}}})", "{{stage}}", instant=True)],
            defaults={"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (1, "red"))},
            options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        w=12,
    )  # fmt: skip
    d.row("In flight: what each stage holds now (true during a stall)")
    d.add(
        timeseries(
            "Oldest call in progress", "How long each stage's oldest call in progress has been running, read at scrape time. A stage stuck on an item climbs here while its latency histograms see nothing (nothing finished).", "s",
            [prom(f"max by (stage) (inference_stage_oldest_inflight_seconds{{{SEL}}})", "{{stage}}")],
        ),
        w=8,
    )  # fmt: skip
    d.add(
        timeseries(
            "Items in progress", "Items each stage is working on right now (a batch counts its items).", "short",
            [prom(f"sum by (stage) (inference_stage_inflight{{{SEL}}})", "{{stage}}")],
        ),
        w=8,
    )  # fmt: skip
    d.add(
        panel(
            "bargauge", "Stalled stages and time since last completion", "Bars: 1 for a stage the server calls stalled (hung: a call far older than its normal duration). Second query: seconds since each stage last finished a call.", "short",
            [prom(f"max by (stage) (inference_stage_stalled{{{SEL}}})", "stalled {{stage}}", instant=True),
             prom(f"time() - max by (stage) (inference_stage_last_completion_timestamp_seconds{{{SEL}}})", "idle s {{stage}}", instant=True)],
            defaults={"min": 0, "thresholds": thresholds((None, "green"), (1, "red"))},
            options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        w=8,
    )  # fmt: skip
    d.row("Queues and batching")
    d.add(
        timeseries(
            "Queue depth",
            "Items waiting in front of each stage.",
            "short",
            [prom(f"sum by (queue) (inference_queue_depth{{{SEL}}})", "{{queue}}")],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "Queue wait p99",
            "99th percentile of the time an item waited in each queue.",
            "s",
            [
                prom(
                    f"histogram_quantile(0.99, sum by (queue, le) (rate(inference_queue_wait_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                    "{{queue}}",
                )
            ],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "Batch size",
            "Mean items per engine call, and how long the batcher held batches open (p99).",
            "short",
            [
                prom(
                    f"sum(rate(inference_batch_size_sum{{{SEL}}}[$__rate_interval])) / sum(rate(inference_batch_size_count{{{SEL}}}[$__rate_interval]))",
                    "mean batch",
                ),
                prom(
                    f"histogram_quantile(0.99, sum by (le) (rate(inference_batch_wait_seconds_bucket{{{SEL}}}[$__rate_interval]))) * 1000",
                    "batch wait p99 (ms)",
                ),
            ],
        ),
        w=8,
    )
    d.add(
        panel(
            "bargauge", "Batch size distribution", "How many batches of each size the engine ran over the time range.", "short",
            [prom(f"sum by (le) (increase(inference_batch_size_bucket{{{SEL}}}[$__range]))", "≤ {{le}}", instant=True, fmt="heatmap")],
            options={"orientation": "vertical", "displayMode": "gradient", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Model capacity by batch size",
            "Model-only items/s measured at start-up for each calibrated batch size.",
            "reqps",
            [
                prom(
                    f'inference_model_capacity_items_per_second{{{SEL}, model=~"$model"}}',
                    "batch {{batch_size}}",
                )
            ],
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Capacity calibration range",
            "Model-only items/s at start-up: the median of the calibration rounds and the lowest and highest round. An efficiency change inside this range is measurement noise, not a regression.",
            "reqps",
            [
                prom(f'inference_model_capacity_items_per_second{{{SEL}, model=~"$model"}}', "batch {{batch_size}} median"),
                prom(f'inference_model_capacity_range_items_per_second{{{SEL}, model=~"$model"}}', "batch {{batch_size}} {{bound}}"),
            ],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        panel(
            "stat", "Calibration spread", "(max − min) ÷ median model capacity over the calibration rounds, per batch size. 0.08 means ±4 %: smaller efficiency changes are noise.", "percentunit",
            [prom(f'max by (batch_size) (inference_model_capacity_spread_ratio{{{SEL}, model=~"$model"}})', "batch {{batch_size}}", instant=True)],
            defaults={"thresholds": thresholds((None, "green"), (0.1, "orange"), (0.2, "red"))},
        ),
        w=12,
    )  # fmt: skip
    d.row("Is the model fed? Is the GPU busy?")
    d.add(
        timeseries(
            "Engine vs pipeline efficiency",
            "Engine efficiency: calibrated engine time ÷ actual (is the model at full speed?). Pipeline efficiency: delivered ÷ model capacity (is the pipeline feeding it?).",
            "percentunit",
            [
                prom(
                    f'inference_engine_efficiency_ratio{{{SEL}, model=~"$model"}}',
                    "engine {{instance}}",
                ),
                prom(
                    f'inference_pipeline_efficiency_ratio{{{SEL}, model=~"$model"}}',
                    "pipeline {{instance}}",
                ),
            ],
            max=1.2,
        ),
        w=8,
    )
    d.add(
        timeseries(
            "MFU",
            "Model FLOPs utilization: achieved FLOP/s ÷ the GPU's dense fp16 peak. Absent on CPU and unknown GPUs — never guessed.",
            "percentunit",
            [prom(f'inference_mfu_ratio{{{SEL}, model=~"$model"}}', "{{instance}}")],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "GPU utilization vs engine busy",
            "NVML GPU utilization (any kernel running) against the infer stage's busy share, and SM activity where GPM exists.",
            "percentunit",
            [
                prom("avg by (gpu) (gpu_utilization_ratio)", "GPU {{gpu}} util"),
                prom("avg by (gpu) (gpu_sm_active_ratio)", "GPU {{gpu}} SM active"),
                prom(
                    f'sum(rate(inference_stage_busy_seconds_total{{{SEL}, stage="infer"}}[$__rate_interval])) / sum(inference_stage_workers{{{SEL}, stage="infer"}})',
                    "infer busy",
                ),
            ],
            max=1,
        ),
        w=8,
    )
    return d.json()


def _stage_variable() -> dict[str, Any]:
    """One stage at a time: the heatmap cannot add up stages whose buckets differ."""
    return query_variable(
        "stage",
        'label_values(inference_stage_duration_seconds_count{job=~"$job"}, stage)',
        label="Stage",
        include_all=False,
        multi=False,
    )
