"""Alerts about the job fleet: backlog against its drain deadline, stalled jobs, a queue
nobody consumes, lost workers, redeliveries, the broker down.

Selectors and thresholds for the fleet live here (not in :class:`alerts.config.Config`):
the jobs API is scraped as ``job="fleet-api"``, workers (found through the API's http_sd)
as ``job="fleet-worker"``, RabbitMQ's own endpoint as ``job="rabbitmq"``.
"""

from __future__ import annotations

from .catalog import Alert, Case
from .config import Config

API = 'job="fleet-api", instance="api:8100"'
WORKER = 'job="fleet-worker"'
BROKER = 'job="rabbitmq", instance="broker:15692"'
API_LABELS = {"job": "fleet-api", "instance": "api:8100"}
#: The backlog must drain within this many seconds at the current throughput.
DRAIN_DEADLINE_SECONDS = 4 * 3600
#: A running job with no finished segment for this long is stalled (segments last ≤ 10 min).
STALL_SECONDS = 15 * 60
#: Share of segments that arrive as redeliveries above which workers are dying.
REDELIVERY_RATIO = 0.1


def fleet_alerts(cfg: Config) -> list[Alert]:
    t = cfg.timing
    return [
        Alert(
            name="FleetBacklogPastDrainDeadline",
            expr=f'fleet_drain_eta_seconds{{job="fleet-api"}} > {DRAIN_DEADLINE_SECONDS}',
            for_=t.ticket_for,
            severity="warning",
            component="fleet",
            summary="The job backlog will not drain within its deadline",
            description='At the current fleet throughput the backlog drains in {{ $value | printf "%.0f" }} s (the deadline is 14400 s).',
            meaning="Work arrives faster than the fleet analyses it, or workers stopped making progress (the ETA is +Inf when nothing moves). Jobs will finish late.",
            confirm="Jobs dashboard: backlog frames, fleet throughput against capacity, ETA to drain; `loglog jobs ls --state queued`.",
            fix="Add workers (`loglog worker --gpu N` on free GPUs); if capacity is far above throughput, find the slow worker on the fleet panels (its verdict names the stage) before adding hardware.",
            cases=(
                Case(
                    "fires when the ETA is 5 h",
                    {f"fleet_drain_eta_seconds{{{API}}}": "18000x30"},
                    "30m",
                    (API_LABELS,),
                    18000,
                ),
                Case(
                    "healthy: 1 h to drain", {f"fleet_drain_eta_seconds{{{API}}}": "3600x30"}, "30m"
                ),
            ),
        ),
        Alert(
            name="FleetJobStalled",
            expr=f'fleet_job_last_progress_age_seconds{{job="fleet-api"}} > {STALL_SECONDS}',
            for_=t.stall_for,
            severity="warning",
            component="fleet",
            summary="Job {{ $labels.job_id }} has made no progress",
            description='Running job {{ $labels.job_id }} finished no segment for {{ $value | printf "%.0f" }} s.',
            meaning="A running job's segments stopped finishing: its worker hangs, its source is slow to read, or all workers are busy with other jobs of higher priority.",
            confirm="`loglog jobs watch <id>`; the job's workers in `GET /v1/jobs/<id>`; those workers' busy gauge and pipeline verdict on the fleet panels.",
            fix="Restart a hung worker (its segment is redelivered, nothing is lost); raise the job's priority or add workers if it is starved.",
            cases=(
                Case(
                    "fires after 20 min without progress",
                    {f'fleet_job_last_progress_age_seconds{{{API}, job_id="j1"}}': "0+60x30"},
                    "30m",
                    ({**API_LABELS, "job_id": "j1"},),
                    1800,
                ),
                Case(
                    "healthy: progress every minute",
                    {f'fleet_job_last_progress_age_seconds{{{API}, job_id="j1"}}': "30x30"},
                    "30m",
                ),
            ),
        ),
        Alert(
            name="FleetQueueNoConsumers",
            expr='fleet_backlog_segments{job="fleet-api"} > 0 and fleet_queue_consumers{job="fleet-api"} == 0',
            for_=t.down_for,
            severity="critical",
            component="fleet",
            summary="Segments are queued and no worker consumes them",
            description="{{ $value | humanize }} segment(s) wait in the queue with no consumer.",
            meaning="No worker is connected to the segment queue: the backlog only grows.",
            confirm="`rabbitmqctl list_queues name messages consumers`; http_sd targets at `/v1/sd/workers`; the workers' logs.",
            fix="Start workers (`loglog worker --broker …`); if they run, check that they use the same --queue and broker vhost as the API.",
            cases=(
                Case(
                    "fires with a backlog and no consumer",
                    {
                        f"fleet_backlog_segments{{{API}}}": "12x10",
                        f"fleet_queue_consumers{{{API}}}": "0x10",
                    },
                    "10m",
                    (API_LABELS,),
                    12,
                ),
                Case(
                    "healthy: consumers present",
                    {
                        f"fleet_backlog_segments{{{API}}}": "12x10",
                        f"fleet_queue_consumers{{{API}}}": "2x10",
                    },
                    "10m",
                ),
            ),
        ),
        Alert(
            name="FleetWorkerLost",
            expr=f"max_over_time((count(up{{{WORKER}}} == 1) or vector(0))[30m:1m]) - (count(up{{{WORKER}}} == 1) or vector(0)) > 0",
            for_=t.down_for,
            severity="warning",
            component="fleet",
            summary="The fleet lost workers",
            description="{{ $value | humanize }} fewer worker(s) answer than in the last 30 minutes.",
            meaning="A worker stopped answering or dropped out of service discovery (its heartbeat expired): killed, crashed, or its node is down. Its segment is redelivered; the fleet is smaller. A deliberate scale-down also fires it for 30 minutes.",
            confirm="http_sd targets at `/v1/sd/workers`; Prometheus → Targets for job fleet-worker; the processes (`pgrep -af '^loglog worker'`); the worker's log and `dmesg` (OOM killer).",
            fix="Restart the worker (`loglog worker --gpu N`; under `loglog up --workers N` it is restarted by itself, see LoglogUpComponentRestarted); if it died on an XID or OOM, see the GPU alerts first.",
            cases=(
                Case(
                    "fires when one of two workers vanishes",
                    {
                        f'up{{{WORKER}, instance="w1"}}': "1x20",
                        f'up{{{WORKER}, instance="w2"}}': "1x5 stale",
                    },
                    "15m",
                    ({},),
                    1,
                ),
                Case(
                    "healthy: both answer",
                    {
                        f'up{{{WORKER}, instance="w1"}}': "1x20",
                        f'up{{{WORKER}, instance="w2"}}': "1x20",
                    },
                    "15m",
                ),
            ),
        ),
        Alert(
            name="FleetRedeliveriesHigh",
            expr=f"sum(rate(fleet_worker_redeliveries_total{{{WORKER}}}[10m])) / sum(rate(fleet_worker_segments_total{{{WORKER}}}[10m])) > {REDELIVERY_RATIO}",
            for_=t.ticket_for,
            severity="warning",
            component="fleet",
            summary="Many segments are redelivered",
            description="{{ $value | humanizePercentage }} of segments arrive as redeliveries.",
            meaning="Workers die or lose the broker while holding segments (OOM, crashes, network), or a segment outlives RabbitMQ's consumer_timeout. Work is repeated and throughput drops.",
            confirm="FleetWorkerLost; worker restarts; `rabbitmq_channel_messages_redelivered_total`; segment duration p99 against consumer_timeout.",
            fix="Fix what kills workers; shorten segments (--segment-seconds) if they approach consumer_timeout.",
            cases=(
                Case(
                    "fires at 50 % redeliveries",
                    {
                        f'fleet_worker_redeliveries_total{{{WORKER}, instance="w1"}}': "0+5x30",
                        f'fleet_worker_segments_total{{{WORKER}, instance="w1", result="done"}}': "0+10x30",
                    },
                    "30m",
                    ({},),
                    0.5,
                ),
                Case(
                    "healthy: none",
                    {
                        f'fleet_worker_redeliveries_total{{{WORKER}, instance="w1"}}': "0x30",
                        f'fleet_worker_segments_total{{{WORKER}, instance="w1", result="done"}}': "0+10x30",
                    },
                    "30m",
                ),
            ),
        ),
        Alert(
            name="FleetBrokerDown",
            expr=f'fleet_broker_up{{job="fleet-api"}} == 0 or up{{{BROKER.split(",")[0]}}} == 0',
            for_=t.down_for,
            severity="critical",
            component="fleet",
            summary="The job broker is unreachable",
            description="RabbitMQ does not answer ({{ $labels.job }} on {{ $labels.instance }}): no segment is delivered.",
            meaning="Workers cannot get segments and the API cannot publish them (new jobs are accepted and wait, pending). Nothing is lost: queues are durable and messages persistent.",
            confirm="`rabbitmq-diagnostics -n <node> status`; the broker's log; `fleet_segments_unpublished` grows.",
            fix="Start RabbitMQ again (same node name and data directory); workers and the API reconnect by themselves and pending segments are published.",
            cases=(
                Case(
                    "fires when the API cannot reach it",
                    {f"fleet_broker_up{{{API}}}": "0x10"},
                    "10m",
                    (API_LABELS,),
                    0,
                ),
                Case(
                    "fires when its own endpoint is down",
                    {f"up{{{BROKER}}}": "0x10"},
                    "10m",
                    ({"job": "rabbitmq", "instance": "broker:15692"},),
                    0,
                ),
                Case(
                    "healthy",
                    {f"fleet_broker_up{{{API}}}": "1x10", f"up{{{BROKER}}}": "1x10"},
                    "10m",
                ),
            ),
        ),
    ]
