"""The jobs HTTP API.

- ``POST /v1/jobs`` ``{source, id?, priority?}`` → 202 with the job (state ``pending``: its
  segments are published in the background, then it is ``queued``)
- ``GET /v1/jobs[?state=pending|queued|running|succeeded|failed|cancelled]`` → ``{"jobs": […]}``
- ``GET /v1/jobs/{id}`` → state, frames done/total, progress, ETA (at the job's rate over
  the last minute, or why there is none: ``eta_status`` measuring/stalled — see
  :mod:`fleet.eta`), workers, result, error
- ``DELETE /v1/jobs/{id}`` → cancels (queued segments are skipped, a running one stops)
- ``GET /v1/sd/workers`` → Prometheus http_sd targets, from live worker heartbeats
- ``GET /metrics`` → :data:`fleet.metrics.API_METRICS`, computed at scrape time
- ``GET /healthz``

The API keeps no state of its own: a restarted API serves the same jobs and progress.
Errors are JSON ``{"error": …}`` that say what to do: 400 bad request (a body that is not
strict JSON: NaN, Infinity, 1e400, a lone surrogate — see
:mod:`inference.server.strictjson`), 401 no or wrong token, 404 unknown job, 408/413 a body
too slow or too large, 409 id taken, 422 a field of the wrong type, an unreadable or
refused source, 503 store down. No input gets a 5xx.

Served by ``loglog jobs serve`` with :func:`server_options`: a connection whose request
headers are not complete after :data:`HEADER_TIMEOUT_S` is closed, and past
:data:`MAX_CONNECTIONS` connections new requests get a 503 at once (a slowloris holds no
thread and no connection for long).

With a token configured, ``POST``/``DELETE`` need ``Authorization: Bearer <token>``; every
source passes a :class:`~inference.media.access.SourcePolicy` first, and credentials in errors
and job records are shown as ``***`` (see :mod:`fleet.access`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from httpkit.bodylimit import BodyLimit
from httpkit.connections import uvicorn_options
from inference.errors import AuthError
from inference.server.auth import check_bearer
from inference.server.strictjson import JSON_BODY_TIMEOUT_S, strict_json_route
from loglog.redact import redact

from .access import SourcePolicy, check_source
from .dispatch import Dispatcher, Publisher
from .errors import (
    BrokerUnavailable,
    FleetConfigError,
    JobConflict,
    JobNotFound,
    SourceUnreadable,
    StoreUnavailable,
)
from .metrics import API_METRICS
from .model import QUEUED, RUNNING, STATES, TERMINAL, Job

#: Unfinished jobs exported one series each, newest first beyond it are left out.
JOB_SERIES_BUDGET = 50
#: Seconds a connection may take to send complete request headers (then it is closed).
HEADER_TIMEOUT_S = 10.0
#: Connections plus in-flight requests past which new requests get a 503 at once.
MAX_CONNECTIONS = 256
#: Request bodies past this get a 413 unread: far above any real job document (a path or
#: URL, an id, a priority).
MAX_JOB_BODY_BYTES = 64 * 1024

_STATUS: dict[type[Exception], int] = {
    FleetConfigError: 400,
    JobNotFound: 404,
    JobConflict: 409,
    SourceUnreadable: 422,
    StoreUnavailable: 503,
    BrokerUnavailable: 503,
}


class JobRequest(BaseModel):
    # Strict: true is not priority 1, and "5" is not 5 (a client sending either has a bug).
    model_config = ConfigDict(strict=True)

    source: str = Field(
        description="a video file path every worker can read, or synthetic://WxH@FPS?seconds=N"
    )
    id: str | None = None
    priority: int = Field(default=0, description="0–9, higher first")


class FleetCollector(Collector):
    """The fleet's gauges, read from the store, the broker and heartbeats at each scrape."""

    def __init__(self, dispatcher: Dispatcher, clock: Callable[[], float] = time.time) -> None:
        self.dispatcher, self.store, self.clock = dispatcher, dispatcher.store, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, API_METRICS[name][2], labels=list(labels))

        now = self.clock()
        store_up = gauge("fleet_store_up")
        try:
            jobs = self.store.jobs(limit=100_000)
            workers = self.store.workers()
            store_up.add_metric([], 1)
        except StoreUnavailable:
            store_up.add_metric([], 0)
            yield store_up
            yield from self._broker(now)
            return
        yield store_up
        by_state = gauge("fleet_jobs", ("state",))
        for state in STATES:
            by_state.add_metric([state], sum(1 for job in jobs if job.state == state))
        yield by_state
        open_jobs = [job for job in jobs if job.state not in TERMINAL]
        # job_id, not job: "job" is the scrape job's label in Prometheus.
        progress = gauge("fleet_job_progress_ratio", ("job_id",))
        eta = gauge("fleet_job_eta_seconds", ("job_id",))
        stalled = gauge("fleet_job_last_progress_age_seconds", ("job_id",))
        for job in open_jobs[:JOB_SERIES_BUDGET]:
            progress.add_metric([job.id], job.progress)
            left = job.eta_seconds(now)
            if left is not None:  # no series while measuring or stalled: no number is true
                eta.add_metric([job.id], left)
            if job.state == RUNNING:  # a queued job waits for the backlog, it is not stalled
                stalled.add_metric([job.id], now - (job.last_progress or job.started or now))
        yield from (progress, eta, stalled)
        backlog = sum(job.total_frames - job.frames_done for job in open_jobs)
        g = gauge("fleet_backlog_frames")
        g.add_metric([], backlog)
        yield g
        g = gauge("fleet_segments_unpublished")
        g.add_metric([], sum(job.segments - job.segments_published for job in open_jobs))
        yield g
        g = gauge("fleet_oldest_unfinished_job_age_seconds")
        g.add_metric([], max((now - job.created for job in open_jobs), default=0.0))
        yield g
        worker_states = gauge("fleet_workers", ("state",))
        busy = sum(1 for w in workers if w.busy)
        worker_states.add_metric(["busy"], busy)
        worker_states.add_metric(["idle"], len(workers) - busy)
        yield worker_states
        throughput = sum(w.frames_per_second for w in workers)
        capacity = sum(w.capacity_frames_per_second for w in workers)
        for name, value in (("fleet_throughput_frames_per_second", throughput),
                            ("fleet_capacity_frames_per_second", capacity)):  # fmt: skip
            g = gauge(name)
            g.add_metric([], value)
            yield g
        g = gauge("fleet_drain_eta_seconds")
        g.add_metric([], drain_eta(backlog, throughput))
        yield g
        yield from self._broker(now)

    def _broker(self, now: float) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("fleet_broker_up", API_METRICS["fleet_broker_up"][2])
        try:
            ready, consumers = self.dispatcher.backlog()
        except BrokerUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, value in (
            ("fleet_backlog_segments", ready),
            ("fleet_queue_consumers", consumers),
        ):
            g = GaugeMetricFamily(name, API_METRICS[name][2])
            g.add_metric([], value)
            yield g


def drain_eta(backlog_frames: float, throughput: float) -> float:
    """Seconds to drain the backlog at the current throughput."""
    if backlog_frames <= 0:
        return 0.0
    return backlog_frames / throughput if throughput > 0 else math.inf


def create_app(
    dispatcher: Dispatcher,
    *,
    publish_interval: float = 1.0,
    clock: Callable[[], float] = time.time,
    token: str | None = None,
    policy: SourcePolicy | None = None,
    body_timeout: float = JSON_BODY_TIMEOUT_S,
) -> FastAPI:
    """The jobs API over ``dispatcher`` (its store and broker). With ``token``, submitting
    and cancelling need ``Authorization: Bearer <token>``; sources must pass ``policy``
    (default :class:`SourcePolicy()`: files only under the working directory); a JSON
    body not received within ``body_timeout`` seconds is answered 408."""
    store = dispatcher.store
    policy = policy or SourcePolicy()
    registry = CollectorRegistry()
    registry.register(FleetCollector(dispatcher, clock))
    help_of = {name: spec[2] for name, spec in API_METRICS.items()}
    frames_submitted = Counter(
        "fleet_frames_submitted_total", help_of["fleet_frames_submitted_total"], registry=registry
    )
    submissions = Counter(
        "fleet_jobs_submitted_total",
        help_of["fleet_jobs_submitted_total"],
        ["result"],
        registry=registry,
    )
    for result in ("accepted", "rejected"):
        submissions.labels(result)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Publishes what submits store, and what was accepted while the broker was down.
        publisher = Publisher(dispatcher, publish_interval)
        publisher.start()
        yield
        await asyncio.to_thread(publisher.stop, 5.0)

    app = FastAPI(title="loglog fleet jobs", lifespan=lifespan)
    app.add_middleware(
        BodyLimit,
        limit=MAX_JOB_BODY_BYTES,
        advice=f"a job request may be at most {MAX_JOB_BODY_BYTES} bytes "
        "(send the job's JSON only)",
    )
    # Before the routes: each reads its JSON body strictly (NaN, 1e400, "\ud800" → 400).
    app.router.route_class = strict_json_route(
        lambda status, problem: JSONResponse({"error": problem}, status_code=status),
        timeout=body_timeout,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the input (a secret in a source, or a value
        # that does not serialise): say where and what is wrong, never the value.
        problems = [
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
            for error in exc.errors()[:10]
        ]
        return JSONResponse({"error": redact("; ".join(problems))[:2000]}, status_code=422)

    @app.exception_handler(AuthError)
    async def unauthorized(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc)}, status_code=401, headers={"www-authenticate": "Bearer"}
        )

    async def authorized(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), token)

    mutating = [Depends(authorized)]

    def fail(exc: Exception) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
        # A source's error quotes the source: never its password or token.
        return JSONResponse({"error": redact(str(exc))}, status_code=status)

    def show(job: Job) -> dict[str, Any]:
        shown = job.as_dict(clock())
        for key in ("source", "error"):
            if isinstance(shown.get(key), str):
                shown[key] = redact(shown[key])
        return shown

    @app.post("/v1/jobs", status_code=202, dependencies=mutating)
    async def submit(request: JobRequest) -> Any:
        try:
            # resolve() may ask DNS: off the event loop.
            source = await run_in_threadpool(check_source, policy, request.source)
            job, new = await run_in_threadpool(
                dispatcher.submit_new, source, job_id=request.id, priority=request.priority
            )
        except (FleetConfigError, SourceUnreadable, JobConflict, StoreUnavailable) as exc:
            submissions.labels("rejected").inc()
            return fail(exc)
        submissions.labels("accepted").inc()
        if new:  # a retried submit is the same demand, already counted
            frames_submitted.inc(job.total_frames)
        return show(job)

    @app.get("/v1/jobs")
    async def list_jobs(state: str | None = None, limit: int = 1000) -> Any:
        if state is not None and state not in STATES:
            return fail(FleetConfigError(f"state {state!r}: use one of {', '.join(STATES)}"))
        if limit < 1:  # a negative slice would drop the oldest jobs without a word
            return fail(FleetConfigError(f"limit {limit}: use 1 or more (default 1000)"))
        try:
            jobs = await run_in_threadpool(store.jobs, state, limit)
        except StoreUnavailable as exc:
            return fail(exc)
        return {"jobs": [show(job) for job in jobs]}

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> Any:
        try:
            return show(await run_in_threadpool(store.get, job_id))
        except (JobNotFound, StoreUnavailable) as exc:
            return fail(exc)

    @app.delete("/v1/jobs/{job_id}", dependencies=mutating)
    async def cancel(job_id: str) -> Any:
        try:
            await run_in_threadpool(store.cancel, job_id)
            return show(await run_in_threadpool(store.get, job_id))
        except (JobNotFound, StoreUnavailable) as exc:
            return fail(exc)

    @app.get("/v1/sd/workers")
    async def service_discovery() -> Any:
        try:
            workers = await run_in_threadpool(store.workers)
        except StoreUnavailable as exc:
            return fail(exc)
        return [
            {"targets": [w.metrics],
             "labels": {"worker": w.name, "gpu": "" if w.gpu is None else str(w.gpu)}}
            for w in workers if w.metrics
        ]  # fmt: skip

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    with contextlib.suppress(Exception):
        app.state.dispatcher = dispatcher
    return app


def server_options(
    *, header_timeout: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that bound connections (the inference
    server's own: a header deadline and a connection cap)."""
    return uvicorn_options(header_timeout=header_timeout, max_connections=max_connections)


__all__ = ["QUEUED", "RUNNING", "FleetCollector", "create_app", "drain_eta", "server_options"]
