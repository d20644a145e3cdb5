"""Alerts about the platform under the model: GPUs, the node agent, and the logger."""

from __future__ import annotations

from .catalog import AGT, GPU0, INF, Alert, Case
from .config import Config

NODE = {"job": "agent", "instance": "node:9400"}
GPU = {**NODE, "gpu": "0", "uuid": "GPU-0"}
CRITICAL_XIDS = (
    "48|63|64|74|79|92|94|95"  # ECC double-bit, row remap failures, NVLink, fell off the bus
)


def platform_alerts(cfg: Config) -> list[Alert]:
    t, agent, job = cfg.timing, cfg.agent, cfg.inference
    return [
        Alert(
            name="GpuTemperatureHigh",
            expr=f"gpu_temperature_celsius{{{agent}}} > {cfg.gpu_temperature_celsius:g}",
            for_=t.gpu_for,
            severity="warning",
            component="gpu",
            summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} runs hot",
            description="GPU {{ $labels.gpu }} is at {{ $value | humanize }} °C.",
            meaning="A hot GPU throttles its clocks soon (the engine slows down) and ages faster.",
            confirm="GPU fleet dashboard: temperature, power and throttle reasons (sw_thermal/hw_thermal) for this GPU.",
            fix="Check the cooling (fans, airflow, room temperature); lower the power limit; spread load to other GPUs.",
            cases=(
                Case(
                    "fires at 91 °C",
                    {f"gpu_temperature_celsius{{{AGT}, {GPU0}}}": "91x10"},
                    "10m",
                    (GPU,),
                    91,
                ),
                Case("healthy", {f"gpu_temperature_celsius{{{AGT}, {GPU0}}}": "60x10"}, "10m"),
            ),
        ),
        Alert(
            name="GpuXidCritical",
            expr=f'increase(gpu_xid_errors_total{{{agent}, xid=~"{CRITICAL_XIDS}"}}[10m]) > 0',
            severity="critical",
            component="gpu",
            summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} reported critical XID {{ $labels.xid }}",
            description='{{ $value | printf "%.0f" }} XID {{ $labels.xid }} event(s) in 10 minutes: memory (ECC), NVLink or bus failure.',
            meaning="The driver reported a hardware-level fault (double-bit ECC, row remapping failure, NVLink error, GPU fallen off the bus). Work on this GPU may be corrupt or stopped.",
            confirm="`dmesg | grep -i xid` on the node; `nvidia-smi -q` for ECC and remapped rows; the GPU may show as stale or lost.",
            fix="Drain the node (stop routing work to it), then reset the GPU or reboot; if XIDs repeat, open an RMA with the vendor.",
            cases=(
                Case(
                    "fires on XID 79",
                    {f'gpu_xid_errors_total{{{AGT}, {GPU0}, xid="79"}}': "0 0 1 1 1 1"},
                    "5m",
                    ({**GPU, "xid": "79"},),
                    1,
                ),
                Case(
                    "healthy: non-critical XIDs are not paged",
                    {f'gpu_xid_errors_total{{{AGT}, {GPU0}, xid="13"}}': "0 0 1 1 1 1"},
                    "5m",
                ),
            ),
        ),
        Alert(
            name="GpuXidError",
            expr=f'increase(gpu_xid_errors_total{{{agent}, xid!~"{CRITICAL_XIDS}"}}[10m]) > 0',
            severity="warning",
            component="gpu",
            summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} reported XID {{ $labels.xid }}",
            description='{{ $value | printf "%.0f" }} XID {{ $labels.xid }} event(s) in 10 minutes.',
            meaning="The driver reported an error: often an application fault (XID 13, 31, 43), sometimes the first sign of a hardware problem.",
            confirm="Look the XID up in NVIDIA's XID catalogue; `dmesg | grep -i xid` shows the process involved.",
            fix="Application XIDs: fix or restart the failing process. If they repeat without a software cause, treat as hardware.",
            cases=(
                Case(
                    "fires on XID 13",
                    {f'gpu_xid_errors_total{{{AGT}, {GPU0}, xid="13"}}': "0 0 1 1 1 1"},
                    "5m",
                    ({**GPU, "xid": "13"},),
                    1,
                ),
                Case("healthy", {f'gpu_xid_errors_total{{{AGT}, {GPU0}, xid="13"}}': "0x5"}, "5m"),
            ),
        ),
        Alert(
            name="GpuUncorrectedEccErrors",
            expr=f'increase(gpu_ecc_errors_total{{{agent}, type="uncorrected"}}[10m]) > 0',
            severity="critical",
            component="gpu",
            summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} has uncorrected memory errors",
            description='{{ $value | printf "%.0f" }} uncorrected ECC error(s) in 10 minutes.',
            meaning="GPU memory returned data that ECC could not correct: results computed on this GPU may be wrong.",
            confirm="`nvidia-smi -q -d ECC,ROW_REMAPPER` on the node.",
            fix="Drain the node; a reset triggers row remapping; repeated errors mean the board should be replaced.",
            cases=(
                Case(
                    "fires on an uncorrected error",
                    {f'gpu_ecc_errors_total{{{AGT}, {GPU0}, type="uncorrected"}}': "0 0 1 1 1 1"},
                    "5m",
                    ({**GPU, "type": "uncorrected"},),
                    1,
                ),
                Case(
                    "healthy: corrected errors only",
                    {f'gpu_ecc_errors_total{{{AGT}, {GPU0}, type="corrected"}}': "0+5x5"},
                    "5m",
                ),
            ),
        ),
        Alert(
            name="GpuMemoryNearFull",
            expr=f"gpu:gpu_memory_used:ratio > {cfg.gpu_memory_ratio}",
            for_=t.gpu_slow_for,
            severity="warning",
            component="gpu",
            summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} is almost out of memory",
            description="{{ $value | humanizePercentage }} of the GPU's memory is in use.",
            meaning="The next allocation (a larger batch, another model) may fail with out-of-memory.",
            confirm="GPU fleet dashboard memory panel; `nvidia-smi` lists the processes and their memory.",
            fix="Lower max_batch, move a model to another GPU, or stop a stray process holding memory.",
            cases=(
                Case(
                    "fires at 97 %",
                    {
                        f"gpu_memory_used_bytes{{{AGT}, {GPU0}}}": "97x20",
                        f"gpu_memory_total_bytes{{{AGT}, {GPU0}}}": "100x20",
                    },
                    "15m",
                    (GPU,),
                    0.97,
                ),
                Case(
                    "healthy",
                    {
                        f"gpu_memory_used_bytes{{{AGT}, {GPU0}}}": "50x20",
                        f"gpu_memory_total_bytes{{{AGT}, {GPU0}}}": "100x20",
                    },
                    "15m",
                ),
            ),
        ),
        Alert(
            name="GpuThrottled",
            expr=(
                "max by (job, instance, gpu, uuid, reason) "
                f'(gpu_throttle_active{{{agent}, reason=~"hw_slowdown|hw_thermal|sw_thermal|hw_power_brake"}}) == 1'
            ),
            for_=t.gpu_slow_for,
            severity="warning",
            component="gpu",
            summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} is throttled ({{ $labels.reason }})",
            description="Clocks are held down by {{ $labels.reason }} (active = {{ $value | humanize }}).",
            meaning="The GPU runs below its clocks because of heat or power: the engine is slower than calibrated.",
            confirm="GPU fleet dashboard: SM clock vs max, temperature, power vs limit.",
            fix="Thermal: cooling and airflow. Power brake / HW slowdown: the PSU or the board's power delivery; check with the vendor.",
            cases=(
                Case(
                    "fires on thermal throttling",
                    {f'gpu_throttle_active{{{AGT}, {GPU0}, reason="hw_thermal"}}': "1x20"},
                    "15m",
                    ({**GPU, "reason": "hw_thermal"},),
                    1,
                ),
                Case(
                    "healthy: idle clocks are not throttling",
                    {f'gpu_throttle_active{{{AGT}, {GPU0}, reason="idle"}}': "1x20"},
                    "15m",
                ),
            ),
        ),
        Alert(
            name="GpuIdleWhileInferQueueWaits",
            expr=(
                f"avg(gpu_utilization_ratio{{{agent}}}) < {cfg.gpu_idle_ratio} and on () "
                f'sum(inference_queue_depth{{{job}, queue="infer"}}) > 1'
            ),
            for_=t.gpu_slow_for,
            severity="warning",
            component="gpu",
            summary="GPUs are idle while items wait for inference",
            description="GPU utilization is {{ $value | humanizePercentage }} although the infer queue holds items.",
            meaning="Work waits for the engine yet the GPUs do nothing: the engine is not on the GPU (CPU fallback), is stuck, or is blocked by the batcher.",
            confirm="`GET /v1/profile` shows the engine's device; the inference log shows which execution provider loaded.",
            fix="Make sure the CUDA provider / TensorRT engine loads (drivers, CUDA libraries); restart a stuck server.",
            cases=(
                Case(
                    "fires when the queue waits and GPUs idle",
                    {
                        f"gpu_utilization_ratio{{{AGT}, {GPU0}}}": "0.02x20",
                        f'inference_queue_depth{{{INF}, queue="infer"}}': "40x20",
                    },
                    "15m",
                    ({},),
                    0.02,
                ),
                Case(
                    "healthy: busy GPU",
                    {
                        f"gpu_utilization_ratio{{{AGT}, {GPU0}}}": "0.9x20",
                        f'inference_queue_depth{{{INF}, queue="infer"}}': "40x20",
                    },
                    "15m",
                ),
            ),
        ),
        Alert(
            name="AgentDown",
            expr=f"up{{{agent}}} == 0",
            for_=t.stale_for,
            severity="warning",
            component="agent",
            summary="Node agent {{ $labels.instance }} is down",
            description="Prometheus cannot scrape the agent (up = {{ $value | humanize }}): GPU data for the node is blind.",
            meaning="The node agent is not answering: no GPU or host metrics for this node. Per-GPU alerts are inhibited while it is down.",
            confirm="`curl -s http://<instance>/healthz`; `pgrep -af '^loglog agent'`.",
            fix="Restart `loglog agent` (under `loglog up` it is restarted by itself; firing there means it is crash-looping); its log says why it stopped.",
            cases=(
                Case("fires when the agent is down", {f"up{{{AGT}}}": "0x10"}, "10m", (NODE,), 0),
                Case("healthy", {f"up{{{AGT}}}": "1x10"}, "10m"),
            ),
        ),
        Alert(
            name="AgentAbsent",
            expr=f"absent(up{{{agent}}})",
            for_=t.absent_for,
            severity="warning",
            component="agent",
            summary="No node agent is being scraped",
            description="Prometheus has no target for job {{ $labels.job }} (absent = {{ $value | humanize }}).",
            meaning="Prometheus has no agent target: GPU monitoring is silently off.",
            confirm="Prometheus → Status → Targets.",
            fix="Restore the agent scrape job.",
            cases=(
                Case(
                    "fires without an agent target",
                    {f"up{{{INF}}}": "1x10"},
                    "10m",
                    ({"job": "agent"},),
                    1,
                ),
                Case("healthy", {f"up{{{AGT}}}": "1x10"}, "10m"),
            ),
        ),
        Alert(
            name="NvmlFailing",
            expr=f'agent_nvml_up{{{agent}, reason!~"ok|library_not_found|import_error"}} == 0',
            for_=t.gpu_for,
            severity="warning",
            component="agent",
            summary="NVML fails on {{ $labels.instance }} ({{ $labels.reason }})",
            description="The agent cannot use NVML: {{ $labels.reason }} (up = {{ $value | humanize }}).",
            meaning="There is an NVIDIA driver but the agent cannot talk to it: no GPU data from this node.",
            confirm="The agent log says why (driver not loaded, no permission); `nvidia-smi` on the node.",
            fix="Load the driver, or give the agent access to /dev/nvidia* (container: the NVIDIA runtime).",
            cases=(
                Case(
                    "fires without permission",
                    {f'agent_nvml_up{{{AGT}, reason="no_permission"}}': "0x10"},
                    "10m",
                    ({**NODE, "reason": "no_permission"},),
                    0,
                ),
                Case(
                    "healthy: a CPU-only node is not an error",
                    {f'agent_nvml_up{{{AGT}, reason="library_not_found"}}': "0x10"},
                    "10m",
                ),
            ),
        ),
        Alert(
            name="GpuDataStale",
            expr=f"gpu_data_stale{{{agent}}} == 1",
            for_=t.stale_for,
            severity="warning",
            component="agent",
            summary="GPU {{ $labels.gpu }} data on {{ $labels.instance }} is stale",
            description="The agent has had no fresh sample of GPU {{ $labels.gpu }} for longer than its hang timeout (stale = {{ $value | humanize }}).",
            meaning="An NVML call on this GPU hangs or the GPU is lost: its metrics are old. This is often the first sign of a GPU falling off the bus.",
            confirm="Agent log (`an NVML call hangs` / `GPU lost`); `nvidia-smi` on the node may hang too; check XID alerts.",
            fix="Drain the node and reset the GPU or reboot.",
            cases=(
                Case(
                    "fires on a stale GPU",
                    {f"gpu_data_stale{{{AGT}, {GPU0}}}": "1x10"},
                    "10m",
                    (GPU,),
                    1,
                ),
                Case("healthy", {f"gpu_data_stale{{{AGT}, {GPU0}}}": "0x10"}, "10m"),
            ),
        ),
        Alert(
            name="LoglogDroppingImportantRecords",
            expr='sum by (job, instance) (rate(loglog_dropped_total{level=~"warning|error|critical", reason!="recursion"}[5m])) > 0',
            for_=t.logs_for,
            severity="warning",
            component="logging",
            summary="The {{ $labels.job }} service on {{ $labels.instance }} drops WARNING+ log records",
            description='{{ $value | printf "%.2g" }} WARNING-or-higher records/s are being dropped.',
            meaning="Important log records are lost: a sink is stuck or failing, or the log volume exceeds what the sinks deliver.",
            confirm="Logs dashboard: drops by sink and reason (sink_backlog: a slow sink; spill_full: Loki down long; http_400: rejected).",
            fix="Fix the failing sink (Loki reachable? disk full?); set spill_dir so Loki outages wait on disk; lower log volume.",
            cases=(
                Case(
                    "fires on warning drops",
                    {
                        f'loglog_dropped_total{{{INF}, level="warning", reason="sink_backlog", sink="loki"}}': "0+6x20"
                    },
                    "15m",
                    (dict(job="inference", instance="inf:8000"),),
                    0.1,
                ),
                Case(
                    "healthy: INFO drops and cut recursion do not count",
                    {
                        f'loglog_dropped_total{{{INF}, level="info", reason="queue_full", sink="all"}}': "0+600x20",
                        f'loglog_dropped_total{{{INF}, level="warning", reason="recursion", sink="loki"}}': "0+6x20",
                    },
                    "15m",
                ),
            ),
        ),
        Alert(
            name="LoglogLokiShippingFailing",
            expr=(
                'sum by (job, instance) (rate(loglog_dropped_total{sink="loki", reason!="recursion"}[10m])) > 0'
                ' or sum by (job, instance) (rate(loglog_sink_errors_total{sink="loki"}[10m])) > 0'
            ),
            for_=t.drops_for,
            severity="warning",
            component="logging",
            summary="The {{ $labels.job }} service on {{ $labels.instance }} cannot ship logs to Loki",
            description='Records bound for Loki are dropped or failing at {{ $value | printf "%.2g" }}/s.',
            meaning="Loki rejects or cannot be reached and records are being lost (no spill, or the spill is full).",
            confirm="The service log (internal loglog warnings name the HTTP status and Loki's answer); Loki's /ready.",
            fix="Restore Loki; for 400s fix labels/line sizes; configure spill_dir to ride out outages.",
            cases=(
                Case(
                    "fires on rejected batches",
                    {
                        f'loglog_dropped_total{{{INF}, level="info", reason="http_400", sink="loki"}}': "0+60x20"
                    },
                    "15m",
                    (dict(job="inference", instance="inf:8000"),),
                    1,
                ),
                Case(
                    "healthy",
                    {f'loglog_delivered_total{{{INF}, level="info", sink="loki"}}': "0+60x20"},
                    "15m",
                ),
            ),
        ),
        Alert(
            name="LoglogSpillGrowing",
            expr=f"loglog_spill_bytes > {cfg.spill_bytes:g} and deriv(loglog_spill_bytes[15m]) > 0",
            for_=t.ticket_for,
            severity="warning",
            component="logging",
            summary="The {{ $labels.job }} service on {{ $labels.instance }} is spilling logs to disk",
            description="{{ $value | humanize }}B of log batches wait on disk and the spill keeps growing.",
            meaning="Loki has not accepted batches for a while; they wait on disk. Nothing is lost yet, but the spill will fill and then drop DEBUG/INFO first.",
            confirm="Logs dashboard spill panel; is Loki up (`/ready`)? The service log names the failing status.",
            fix="Restore Loki; the spill drains by itself, oldest first.",
            cases=(
                Case(
                    "fires while the spill grows",
                    {f"loglog_spill_bytes{{{INF}}}": "20000000+100000x40"},
                    "35m",
                    (dict(job="inference", instance="inf:8000"),),
                    23_500_000,
                ),
                Case(
                    "healthy: small and shrinking",
                    {f"loglog_spill_bytes{{{INF}}}": "2000000-10000x40"},
                    "35m",
                ),
            ),
        ),
    ]
