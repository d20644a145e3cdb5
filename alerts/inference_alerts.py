"""Alerts about the inference service: up, flowing, fast, fed."""

from __future__ import annotations

from .catalog import INF, Alert, Case, burn_rate_alerts
from .config import Config

SERVER = {"job": "inference", "instance": "inf:8000"}


def inference_alerts(cfg: Config) -> list[Alert]:
    t, job = cfg.timing, cfg.inference
    alerts = [
        Alert(
            name="InferenceDown",
            expr=f"up{{{job}}} == 0",
            for_=t.down_for,
            severity="critical",
            component="inference",
            summary="Inference server {{ $labels.instance }} is down",
            description="Prometheus cannot scrape {{ $labels.instance }} (up = {{ $value | humanize }}).",
            meaning="The inference server does not answer /metrics: it is dead, hung, or unreachable. No frame or request is being served by it. (Not overload: an overloaded server keeps answering its scrapes — they pass its max_connections guard and no inference queue — and sheds requests instead; that is InferenceShedding.)",
            confirm="`curl -s http://<instance>/healthz`; check the process (`pgrep -af '^loglog serve'`) and its log; the Prometheus targets page shows the scrape error.",
            fix="Restart the server (under `loglog up` it is restarted by itself within seconds, so this firing there means it is crash-looping: see LoglogUpComponentCrashLoop). If it crashes again, read the last log lines (a ModelError or ConfigError says what to fix) and the host's memory (OOM kills).",
            cases=(
                Case("fires when the scrape fails", {f"up{{{INF}}}": "0x10"}, "5m", (SERVER,), 0),
                Case("healthy", {f"up{{{INF}}}": "1x10"}, "5m"),
            ),
        ),
        Alert(
            name="InferenceAbsent",
            expr=f"absent(up{{{job}}})",
            for_=t.absent_for,
            severity="critical",
            component="inference",
            summary="No inference server is being scraped",
            description="Prometheus has no target for job {{ $labels.job }} (absent = {{ $value | humanize }}): silence here is not health.",
            meaning="Prometheus has no inference target at all: a deleted scrape config, a broken service discovery, or every replica gone. Without this alert, silence would look healthy.",
            confirm="Open Prometheus → Status → Targets and look for the inference job; check the Prometheus config that `loglog up` (or compose) generated.",
            fix="Restore the scrape job or the servers. `loglog up` regenerates a correct config on start.",
            cases=(
                Case(
                    "fires when the job has no target",
                    {'up{job="agent", instance="node:9400"}': "1x10"},
                    "10m",
                    ({"job": "inference"},),
                    1,
                ),
                Case("healthy", {f"up{{{INF}}}": "1x10"}, "10m"),
            ),
        ),
        Alert(
            name="InferenceStalled",
            expr=(
                f"max by (job, instance, stage) (max_over_time(inference_stage_oldest_inflight_seconds{{{job}}}[{t.stall_window}]))"
                f" and on (job, instance, stage) max by (job, instance, stage) (max_over_time(inference_stage_stalled{{{job}}}[{t.stall_window}])) > 0"
                f" or max by (job, instance, stage) (inference_stage_oldest_inflight_seconds{{{job}}}) > {cfg.hung_seconds:g}"
                f' or time() - max by (job, instance) (inference_stage_last_completion_timestamp_seconds{{{job}, stage="encode"}}) > {cfg.hung_seconds:g}'
                f" and on (job, instance) sum by (job, instance) (inference_stage_inflight{{{job}}}) > 0"
            ),
            for_=t.stall_for,
            severity="critical",
            component="inference",
            summary="Inference on {{ $labels.instance }} is stalled (stage: {{ $labels.stage }})",
            description="A call has been in progress for {{ $value | humanize }}s, far longer than the stage's normal duration (or nothing has left the pipeline for that long while items are in flight).",
            meaning="A stage is hung, not slow: a call in it has run far longer than its normal duration (the server's own stall verdict, or over a minute whatever the verdict), or items are in flight and none has come out for a minute. Items behind it wait; live streams drop frames; requests time out.",
            confirm="`curl -s http://<instance>/v1/profile` or `loglog profile --url http://<instance>`: the verdict says which stage is stalled and for how long (the in flight and oldest columns). `GET /v1/drills` shows any drill; the profiler dashboard's in-flight panels show when it started.",
            fix="End drills (`DELETE /v1/drills`). If the engine is hung (GPU fault: check XID alerts), restart the server; if another stage is stuck, capture `py-spy dump --pid <pid>` first, then restart.",
            cases=(
                Case(
                    "fires on the server's stall verdict, with the call's age",
                    {
                        f'inference_stage_stalled{{{INF}, stage="postprocess"}}': "0 0 1x20",
                        f'inference_stage_oldest_inflight_seconds{{{INF}, stage="postprocess"}}': "0 0 10+10x20",
                    },
                    "2m",
                    ({**SERVER, "stage": "postprocess"},),
                    110,
                    interval="10s",
                ),
                Case(
                    "keeps firing through a near-stall that lets one item through now and then",
                    {
                        f'inference_stage_stalled{{{INF}, stage="infer"}}': "1 1 1 1 1 1 0 1 1 1 1 1 0 1 1 1",
                        f'inference_stage_oldest_inflight_seconds{{{INF}, stage="infer"}}': "10 20 30 40 50 60 1 10 20 30 40 50 1 10 20 30",
                    },
                    "120s",
                    ({**SERVER, "stage": "infer"},),
                    50,
                    interval="10s",
                ),
                Case(
                    "fires on a call older than a minute even without a verdict",
                    {f'inference_stage_oldest_inflight_seconds{{{INF}, stage="infer"}}': "0+10x20"},
                    "3m",
                    ({**SERVER, "stage": "infer"},),
                    180,
                    interval="10s",
                ),
                Case(
                    "healthy: calls finish in milliseconds",
                    {
                        f'inference_stage_stalled{{{INF}, stage="infer"}}': "0x20",
                        f'inference_stage_oldest_inflight_seconds{{{INF}, stage="infer"}}': "0.01x20",
                        f'inference_stage_inflight{{{INF}, stage="infer"}}': "4x20",
                        f'inference_stage_last_completion_timestamp_seconds{{{INF}, stage="encode"}}': "0+10x20",
                    },
                    "3m",
                    interval="10s",
                ),
            ),
        ),
        Alert(
            name="InferenceThroughputCollapsed",
            expr=(
                f'sum by (job, instance) (rate(inference_stage_items_total{{{job}, stage="encode"}}[{t.collapse_window}]))'
                f" < {cfg.collapse_ratio:g} * sum by (job, instance) (rate(inference_frames_total{{{job}}}[{t.collapse_window}]))"
                f" and on (job, instance) sum by (job, instance) (inference_streams_active{{{job}}}) > 0"
            ),
            for_=t.collapse_for,
            severity="critical",
            component="inference",
            summary="Output of {{ $labels.instance }} collapsed against its input",
            description="Output fell to {{ $value | humanize }} items/s, under 5 % of the frame rate the streams bring in.",
            meaning="Streams bring frames in but at most one in twenty comes out: a stage has all but stopped (a near-stall that still lets an item through now and then, which a 'nothing comes out' rule never sees).",
            confirm="`loglog profile --url http://<instance>`: the verdict names the stalled or saturated stage; `GET /v1/streams` shows frames dropped as behind.",
            fix="As for InferenceStalled: end drills, then find the stuck stage (py-spy dump) and restart; if a stage is merely far too slow, add workers or move streams to another server.",
            cases=(
                Case(
                    "fires when 1 item/s comes out of 60 frames/s",
                    {
                        f"inference_streams_active{{{INF}}}": "2x20",
                        f'inference_frames_total{{{INF}, stream="cam1"}}': "0+600x20",
                        f'inference_stage_items_total{{{INF}, stage="encode"}}': "0+10x20",
                    },
                    "2m",
                    (SERVER,),
                    1,
                    interval="10s",
                ),
                Case(
                    "healthy: half the frames come out (a slow stage, not a collapse)",
                    {
                        f"inference_streams_active{{{INF}}}": "2x20",
                        f'inference_frames_total{{{INF}, stream="cam1"}}': "0+600x20",
                        f'inference_stage_items_total{{{INF}, stage="encode"}}': "0+300x20",
                    },
                    "2m",
                    interval="10s",
                ),
                Case(
                    "healthy: no streams",
                    {
                        f"inference_streams_active{{{INF}}}": "0x20",
                        f'inference_frames_total{{{INF}, stream="cam1"}}': "100x20",
                        f'inference_stage_items_total{{{INF}, stage="encode"}}': "100x20",
                    },
                    "2m",
                    interval="10s",
                ),
            ),
        ),
        Alert(
            name="InferenceQueueSaturated",
            expr=f"max by (job, instance, queue) (inference_queue_depth{{{job}}} / inference_queue_capacity{{{job}}}) > {cfg.queue_saturation}",
            for_=t.saturated_for,
            severity="warning",
            component="inference",
            summary="The {{ $labels.queue }} queue on {{ $labels.instance }} is full",
            description="The queue in front of {{ $labels.queue }} is {{ $value | humanizePercentage }} full.",
            meaning="The stage after this queue cannot keep up: the queue stays full, upstream blocks, live streams drop frames and latency grows.",
            confirm="`loglog profile`: the stage behind the full queue should be the bottleneck with utilization near 100 %.",
            fix="Add workers to that stage (config `workers`, reloaded live), lower the input rate, or add servers. For infer: a larger batch or a faster engine.",
            cases=(
                Case(
                    "fires on a full queue",
                    {
                        f'inference_queue_depth{{{INF}, queue="infer"}}': "64x10",
                        f'inference_queue_capacity{{{INF}, queue="infer"}}': "64x10",
                    },
                    "10m",
                    ({**SERVER, "queue": "infer"},),
                    1.0,
                ),
                Case(
                    "healthy",
                    {
                        f'inference_queue_depth{{{INF}, queue="infer"}}': "3x10",
                        f'inference_queue_capacity{{{INF}, queue="infer"}}': "64x10",
                    },
                    "10m",
                ),
            ),
        ),
        Alert(
            name="InferenceFramesDropping",
            expr=(
                f'sum by (job, instance, stream) (rate(inference_frames_dropped_total{{{job}, reason!="shutdown"}}[5m]))'
                f" / sum by (job, instance, stream) (rate(inference_frames_total{{{job}}}[5m])) > {cfg.drop_ratio}"
            ),
            for_=t.drops_for,
            severity="warning",
            component="inference",
            summary="Stream {{ $labels.stream }} on {{ $labels.instance }} drops frames",
            description="{{ $value | humanizePercentage }} of the stream's frames are dropped.",
            meaning="The pipeline is slower than the live stream (reason=behind: its mailbox drops the oldest frames) or the source cannot decode in real time (reason=late).",
            confirm="`GET /v1/streams` shows drops by reason; `loglog profile` names the bottleneck.",
            fix="behind: relieve the bottleneck stage or move streams to another server. late: lower the source resolution/fps or use hardware decoding.",
            cases=(
                Case(
                    "fires at 1 in 6 frames dropped",
                    {
                        f'inference_frames_total{{{INF}, stream="cam1"}}': "0+1800x30",
                        f'inference_frames_dropped_total{{{INF}, stream="cam1", reason="behind"}}': "0+300x30",
                    },
                    "25m",
                    ({**SERVER, "stream": "cam1"},),
                    1 / 6,
                ),
                Case(
                    "healthy: shutdown drops do not count",
                    {
                        f'inference_frames_total{{{INF}, stream="cam1"}}': "0+1800x30",
                        f'inference_frames_dropped_total{{{INF}, stream="cam1", reason="shutdown"}}': "0+600x30",
                    },
                    "25m",
                ),
            ),
        ),
        Alert(
            name="InferenceStreamLagging",
            expr=f"max by (job, instance, stream) (inference_stream_lag_seconds{{{job}}}) > {cfg.lag_seconds}",
            for_=t.lag_for,
            severity="warning",
            component="inference",
            summary="Stream {{ $labels.stream }} on {{ $labels.instance }} lags behind real time",
            description="The newest ingested frame is {{ $value | humanize }}s old.",
            meaning="Results for this live stream describe the past: frames wait too long before entering the pipeline.",
            confirm="`GET /v1/streams` shows lag_s; compare with its fps and drops.",
            fix="Same as for dropped frames: relieve the bottleneck, or reduce the stream's resolution or rate.",
            cases=(
                Case(
                    "fires at 5 s of lag",
                    {f'inference_stream_lag_seconds{{{INF}, stream="cam1"}}': "5x10"},
                    "10m",
                    ({**SERVER, "stream": "cam1"},),
                    5,
                ),
                Case(
                    "healthy",
                    {f'inference_stream_lag_seconds{{{INF}, stream="cam1"}}': "0.05x10"},
                    "10m",
                ),
            ),
        ),
        Alert(
            name="InferenceModelUnderfed",
            expr=(
                f"avg by (job, instance) (inference_pipeline_efficiency_ratio{{{job}}}) < {cfg.underfed_efficiency}"
                " and on (job, instance) ("
                f'sum by (job, instance) (rate(inference_frames_dropped_total{{{job}, reason="behind"}}[{t.window}])) > 0'
                f' or sum by (job, instance) (avg_over_time(inference_queue_depth{{{job}, queue="preprocess"}}[{t.window}])) > 1)'
            ),
            for_=t.efficiency_for,
            severity="warning",
            component="inference",
            summary="The model on {{ $labels.instance }} is under-fed while input waits",
            description="The pipeline delivers {{ $value | humanizePercentage }} of the model's capacity although frames are waiting.",
            meaning="Input is available (frames dropped as behind, or the first queue holding items on average) yet the model runs far below what it can do: a stage before it (decode, preprocess) is the limit.",
            confirm="`loglog profile`: the verdict names the stage; infer shows as starved.",
            fix="Add workers to that stage, make it cheaper (lower input resolution), or move preprocessing off the engine's cores.",
            cases=(
                Case(
                    "fires when frames wait and efficiency is low",
                    {
                        f'inference_pipeline_efficiency_ratio{{{INF}, model="m"}}': "0.3x30",
                        f'inference_frames_dropped_total{{{INF}, stream="cam1", reason="behind"}}': "0+60x30",
                    },
                    "25m",
                    (SERVER,),
                    0.3,
                ),
                Case(
                    "healthy: low efficiency because the load is low",
                    {
                        f'inference_pipeline_efficiency_ratio{{{INF}, model="m"}}': "0.3x30",
                        f'inference_queue_depth{{{INF}, queue="preprocess"}}': "0 1 0 0 1 0 0 0 1 0 0 0 0 1 0 0 0 0 1 0 0 0 1 0 0 0 0 1 0 0 0",
                    },
                    "25m",
                ),
            ),
        ),
        Alert(
            name="InferenceEngineSlowerThanCalibration",
            expr=(
                f"avg by (job, instance) (inference_engine_efficiency_ratio{{{job}}}) < {cfg.engine_efficiency}"
                " and on (job, instance) "
                f'sum by (job, instance) (rate(inference_stage_busy_seconds_total{{{job}, stage="infer"}}[5m])) > 0.5'
            ),
            for_=t.efficiency_for,
            severity="warning",
            component="inference",
            summary="The engine on {{ $labels.instance }} runs below its calibrated speed",
            description="Batches take longer than calibrated: the engine runs at {{ $value | humanizePercentage }} of its measured speed.",
            meaning="The model itself got slower than at start-up: CPU contention from other stages or processes, GPU throttling (power, thermal), or a noisy neighbour.",
            confirm="Check GPU throttle reasons and temperature (GPU fleet dashboard); on CPU, the host CPU panels and `loglog profile` (the verdict says contention).",
            fix="Relieve contention (fewer engine threads than cores, fewer co-located processes), fix cooling/power limits, or restart to recalibrate if the hardware changed.",
            cases=(
                Case(
                    "fires when busy and slow",
                    {
                        f'inference_engine_efficiency_ratio{{{INF}, model="m"}}': "0.5x30",
                        f'inference_stage_busy_seconds_total{{{INF}, stage="infer"}}': "0+45x30",
                    },
                    "25m",
                    (SERVER,),
                    0.5,
                ),
                Case(
                    "healthy: at calibrated speed",
                    {
                        f'inference_engine_efficiency_ratio{{{INF}, model="m"}}': "0.97x30",
                        f'inference_stage_busy_seconds_total{{{INF}, stage="infer"}}': "0+45x30",
                    },
                    "25m",
                ),
            ),
        ),
        Alert(
            name="InferenceShedding",
            expr=(
                f"sum by (job, instance) (rate(inference_requests_shed_total{{{job}}}[{t.window}]))"
                f" / (sum by (job, instance) (rate(inference_requests_admitted_total{{{job}}}[{t.window}]))"
                f' + sum by (job, instance) (rate(inference_requests_shed_total{{{job}, reason!="expired"}}[{t.window}])))'
                f" > {cfg.shed_ratio:g}"
            ),
            for_=t.ticket_for,
            severity="warning",
            component="inference",
            summary="Inference server {{ $labels.instance }} sheds requests: more comes in than it can serve",
            description="{{ $value | humanizePercentage }} of the HTTP requests offered are answered 503 with Retry-After (refused at admission, or dropped past their deadline).",
            meaning="The offered load is above what the server can answer within the requests' deadlines, for a sustained period. It is doing what it should — refusing at once (503, Retry-After, a body naming the limit) the requests it cannot answer in time, and dropping from its queues those whose deadline would pass, so the ones it admits are answered within the SLO and the engine never works for a client that gave up. Live streams go first; HTTP gets what they leave. The shed requests count against availability (InferenceErrorsBudgetBurn).",
            confirm="`curl -s http://<instance>/v1/profile | jq .admission`: http_capacity_items_per_s (what HTTP gets after the streams), stream_items_per_s, requests_in_flight, predicted_answer_s. `rate(inference_requests_shed_total[5m])` by reason: predicted_wait (refused at once), expired (dropped in a queue: the prediction was optimistic), queue_full, max_connections (the last guard: raise max_connections or lower the load). `loglog profile` names the stage that limits the rate.",
            fix="Add capacity (another server, a faster engine, more workers for a stage that is the limit) or move streams elsewhere; ask heavy clients to back off (they are told Retry-After). Raise request_timeout_s only if clients really wait longer — it lets the queue grow, not the capacity.",
            cases=(
                Case(
                    "fires when a fifth of the offered requests are shed",
                    {
                        f"inference_requests_admitted_total{{{INF}}}": "0+80x30",
                        f'inference_requests_shed_total{{{INF}, reason="predicted_wait"}}': "0+20x30",
                        f'inference_requests_shed_total{{{INF}, reason="expired"}}': "0x30",
                    },
                    "25m",
                    (SERVER,),
                    0.2,
                ),
                Case(
                    "healthy: one in a thousand shed",
                    {
                        f"inference_requests_admitted_total{{{INF}}}": "0+999x30",
                        f'inference_requests_shed_total{{{INF}, reason="predicted_wait"}}': "0+1x30",
                    },
                    "25m",
                ),
                Case(
                    "healthy: no requests at all",
                    {
                        f"inference_requests_admitted_total{{{INF}}}": "0x30",
                        f'inference_requests_shed_total{{{INF}, reason="predicted_wait"}}': "0x30",
                    },
                    "25m",
                ),
            ),
        ),
        Alert(
            name="InferenceConfigReloadRejected",
            expr=f'increase(inference_config_reloads_total{{{job}, result="rejected"}}[15m]) > 0',
            severity="warning",
            component="inference",
            summary="A config reload on {{ $labels.instance }} was rejected",
            description='{{ $value | printf "%.0f" }} reload(s) rejected in 15 minutes; the running config was kept.',
            meaning="Someone changed the config file, and the change was invalid or needs a restart. The server still runs the previous config — the change is not in effect.",
            confirm="The server log has the rejection with the reason (`config reload rejected`).",
            fix="Fix the file as the message says (or restart for options that cannot change live).",
            cases=(
                Case(
                    "fires after a rejection",
                    {f'inference_config_reloads_total{{{INF}, result="rejected"}}': "0 0 0 1 1 1"},
                    "5m",
                    ({**SERVER, "result": "rejected"},),
                    1,
                ),
                Case(
                    "healthy: applied reloads",
                    {f'inference_config_reloads_total{{{INF}, result="applied"}}': "0 0 0 1 1 1"},
                    "5m",
                ),
            ),
        ),
    ]
    ok, err = (
        f'inference_requests_total{{{INF}, status="ok"}}',
        f'inference_requests_total{{{INF}, status="error"}}',
    )
    le = f'{{{INF}, le="{float(cfg.latency_slo_seconds)!r}"}}'
    bucket, count = (
        f"inference_request_duration_seconds_bucket{le}",
        f"inference_request_duration_seconds_count{{{INF}}}",
    )
    stuck = f'inference_requests_inflight{{{INF}, older_than="{cfg.older_than}"}}'
    job_only = {"job": "inference"}
    shed = f'inference_requests_shed_total{{{INF}, reason="predicted_wait"}}'
    alerts += burn_rate_alerts(
        cfg, slo="errors", ratio="job:inference_request_errors:ratio_rate", what="fail",
        counts=(
            "Requests shed under overload count as failed (availability): refused with a 503 "
            "and Retry-After, or dropped from a queue when their deadline would pass first "
            "(inference_requests_shed_total; see InferenceShedding)."
        ),
        cases={
            "critical": (
                Case("fires at 20 % errors", {ok: "0+80x120", err: "0+20x120"}, "90m", (job_only,), 0.2),
                Case("fires when a fifth of the requests are shed", {ok: "0+80x120", err: "0x120", shed: "0+20x120"}, "90m", (job_only,), 0.2),
                Case("healthy at 0.1 % errors", {ok: "0+999x120", err: "0+1x120"}, "90m"),
                Case("healthy at 0.1 % shed", {ok: "0+999x120", err: "0x120", shed: "0+1x120"}, "90m"),
            ),
            "warning": (
                Case("fires at 5 % errors for hours", {ok: "0+95x240", err: "0+5x240"}, "3h", (job_only,), 0.05),
                Case("healthy", {ok: "0+100x240", err: "0x240"}, "3h"),
            ),
        },
    )  # fmt: skip
    alerts += burn_rate_alerts(
        cfg, slo="latency", ratio="job:inference_request_slow:ratio_rate", what=f"take longer than {cfg.latency_slo_seconds:g} s",
        counts=(
            "It counts the requests the server answered (and those still in flight past the "
            "SLO): a request shed under overload was answered at once with a 503 and counts "
            "against availability (InferenceErrorsBudgetBurn), not here — so shedding keeps "
            "this budget, and an overload that ends stops burning it."
        ),
        cases={
            "critical": (
                Case("fires when half the requests are slow", {count: "0+100x120", bucket: "0+50x120"}, "90m", (job_only,), 0.5),
                Case("fires when requests are stuck in flight and none finish", {count: "100x120", bucket: "100x120", stuck: "200x120"}, "90m", (job_only,), 1),
                Case("healthy when all are fast", {count: "0+100x120", bucket: "0+100x120"}, "90m"),
            ),
            "warning": (
                Case("fires at 5 % slow for hours", {count: "0+100x240", bucket: "0+95x240"}, "3h", (job_only,), 0.05),
                Case("healthy", {count: "0+100x240", bucket: "0+100x240"}, "3h"),
            ),
        },
    )  # fmt: skip
    return alerts
