"""HTTP API of the runtime.

- ``POST /v1/infer`` — image/jpeg, image/png or a .npy array → outputs, per-stage ms, trace id;
  a deadline per request (``X-Request-Timeout`` seconds, else ``request_timeout_s``): one
  that cannot be met is a 503 with ``Retry-After`` at once (inference/core/admission.py)
- ``POST /v1/streams`` ``{source, id?, record?}`` → 201; ``GET /v1/streams``;
  ``DELETE /v1/streams/{id}``
- ``GET /metrics`` — OpenMetrics (with exemplars) when the Accept header asks, text otherwise
- ``GET /healthz`` (the process serves), ``GET /readyz`` (model loaded and calibrated)
- ``GET /v1/profile`` — the live verdict and stage windows
- ``POST /v1/drills`` ``{stage, delay_ms, duration_s}``, ``DELETE /v1/drills`` — only with
  ``--allow-drills``

Every runtime error becomes a JSON ``{"error", "detail"}`` with the status its class
carries (4xx for the client's mistakes), and the server keeps serving. Limits are checked
before the work they guard (see ``limits.py``); with a token configured, every mutating
endpoint needs ``Authorization: Bearer <token>`` (see ``auth.py``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from loglog.redact import redact

from ..core.admission import TIMEOUT_HEADER
from ..errors import BodyTimeoutError, DrillError, InferenceError, OverloadedError, ShedError
from ..runtime import Runtime
from .auth import check_bearer
from .bodies import request_item
from .limits import check_request, read_body
from .strictjson import strict_json_route

#: How long past its deadline a request still waits for its answer: only a stalled stage
#: keeps an admitted request that long (a queue answers a late one at once).
STALL_GRACE = 5.0


class StreamRequest(BaseModel):
    source: str = Field(
        description="synthetic://640x480@30, a video file path, or an rtsp/http URL"
    )
    id: str | None = Field(default=None, max_length=64)
    record: str | None = Field(
        default=None, description="a new .mp4/.mkv/.ts file name in the server's record_dir"
    )


class DrillRequest(BaseModel):
    stage: str = Field(max_length=64)
    # Strict: true is not a delay of 1 ms (a bool is not a number); ints are still floats.
    delay_ms: float = Field(strict=True)
    duration_s: float = Field(default=60.0, strict=True)


def create_app(
    runtime: Runtime,
    *,
    allow_drills: bool = False,
    on_ready: Callable[[Runtime], None] | None = None,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI app; the runtime is started (calibrated) in the background on startup.
    With ``token``, mutating endpoints need ``Authorization: Bearer <token>``."""

    async def authorized(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), token)

    mutating = [Depends(authorized)]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def start() -> None:
            try:
                runtime.start()
                if on_ready is not None:
                    on_ready(runtime)
            except Exception:
                runtime.log.exception("the runtime failed to start")

        starter = threading.Thread(target=start, name="runtime-start", daemon=True)
        starter.start()
        yield
        await run_in_threadpool(starter.join, 60)
        await run_in_threadpool(runtime.stop)

    app = FastAPI(title="loglog inference", lifespan=lifespan)
    # Before the routes: JSON bodies are strict (NaN, 1e400, "\ud800" → 400), capped, timed.
    app.router.route_class = strict_json_route(
        lambda status, problem: JSONResponse(
            {"error": "InvalidJSON", "detail": problem}, status_code=status
        ),
        timeout=runtime.config.body_timeout_s,
    )

    @app.exception_handler(InferenceError)
    async def inference_error(request: Request, exc: InferenceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        body: dict[str, Any] = {"error": type(exc).__name__, "detail": redact(str(exc))}
        if isinstance(exc, ShedError):
            headers = {"Retry-After": str(exc.retry_after)}
            body.update(reason=exc.reason, limit=exc.limit, retry_after_s=exc.retry_after)
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the offending input, which may be NaN/inf (and then
        # fails to serialise: a 500) or a secret. Say where and what, never the value.
        problems = [
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
            for error in exc.errors()[:10]
        ]
        return JSONResponse(
            {"error": "InvalidRequest", "detail": redact("; ".join(problems))[:2000]},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: say so without echoing internals (paths, URLs).
        runtime.log.error(
            "unhandled error", path=request.url.path, error=redact(f"{type(exc).__name__}: {exc}")
        )
        return JSONResponse(
            {"error": "InternalError", "detail": "the server failed; see its log"},
            status_code=500,
        )

    def require_ready() -> None:
        if not runtime.ready:
            raise OverloadedError(
                "the model is still loading and calibrating; retry in a few seconds"
            )

    @app.post("/v1/infer")
    async def infer(request: Request) -> dict[str, Any]:
        require_ready()
        admission = runtime.admission
        assert admission is not None
        deadline = admission.deadline(request.headers.get(TIMEOUT_HEADER))
        # Refused before the body is read, when the answer is already known: the cheapest
        # refusal (uvicorn discards the unread body and keeps the connection).
        admission.check(deadline)
        config = runtime.config
        try:
            body = await asyncio.wait_for(
                read_body(request.headers, request.stream(), limit=config.max_body_bytes),
                config.body_timeout_s,
            )
        except TimeoutError:
            raise BodyTimeoutError(
                f"the body did not arrive within {config.body_timeout_s:g}s (body_timeout_s)"
            ) from None
        content_type = request.headers.get("content-type", "")
        # Header-only checks (pixels, .npy shape) before the decode stage does the work;
        # the decode stage checks the parsed tensor is finite (422).
        check_request(
            body,
            content_type,
            max_pixels=config.max_image_pixels,
            max_elements=config.max_tensor_elements,
        )
        item = request_item(body, content_type)
        # Admitted or refused (again: the body took time) on the loop, without blocking.
        future = admission.submit(item, deadline)
        try:
            done = await asyncio.wait_for(
                asyncio.wrap_future(future), admission.remaining(deadline) + STALL_GRACE
            )
        except TimeoutError as exc:
            raise OverloadedError(
                f"no result {STALL_GRACE:g}s past this request's deadline: a stage is "
                "stalled (GET /v1/profile names it)"
            ) from exc
        return {
            "outputs": done.result,
            "stage_ms": {stage: round(ms, 3) for stage, ms in done.stage_ms.items()},
            "trace_id": done.trace_id,
            "model": runtime.info.name,
        }

    @app.post("/v1/streams", status_code=201, dependencies=mutating)
    async def add_stream(body: StreamRequest) -> dict[str, Any]:
        require_ready()
        assert runtime.streams is not None
        return await run_in_threadpool(runtime.streams.add, body.source, body.id, body.record)

    @app.get("/v1/streams")
    async def list_streams() -> list[dict[str, Any]]:
        return runtime.streams.list() if runtime.streams is not None else []

    @app.delete("/v1/streams/{stream_id}", status_code=204, dependencies=mutating)
    async def remove_stream(stream_id: str) -> Response:
        require_ready()
        assert runtime.streams is not None
        await run_in_threadpool(runtime.streams.remove, stream_id)
        return Response(status_code=204)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            return Response(openmetrics_latest(runtime.registry), media_type=OPENMETRICS_TYPE)
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if runtime.ready:
            return JSONResponse({"status": "ready", "model": runtime.info.name})
        return JSONResponse({"status": "starting"}, status_code=503)

    @app.get("/v1/profile")
    async def profile() -> dict[str, Any]:
        require_ready()
        return runtime.report()

    @app.get("/v1/drills")
    async def list_drills() -> dict[str, Any]:
        return {"allowed": allow_drills, "active": runtime.drills.active()}

    @app.post("/v1/drills", status_code=201, dependencies=mutating)
    async def start_drill(body: DrillRequest) -> dict[str, Any]:
        if not allow_drills:
            raise DrillError("drills are disabled: start the server with --allow-drills")
        return runtime.drills.start(body.stage, body.delay_ms, body.duration_s)

    @app.delete("/v1/drills", dependencies=mutating)
    async def stop_drills() -> dict[str, int]:
        if not allow_drills:
            raise DrillError("drills are disabled: start the server with --allow-drills")
        return {"stopped": runtime.drills.stop_all()}

    return app
