"""``loglog serve``: the runtime behind HTTP, with logs through loglog."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

import loglog
from httpkit.connections import OpenFilesError, uvicorn_options

from ..errors import InferenceError
from ..runtime import Runtime
from ..tuning.affinity import allowed_cores, pin_current_thread
from .app import create_app
from .auth import TOKEN_ENV, load_token, require_token_for
from .ports import port_free


def serve(
    *,
    config: str | None = None,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_drills: bool = False,
    demo_streams: int = 0,
    demo_source: str = "synthetic://640x480@15",
    engine: str = "auto",
    precision: str = "auto",
    token_file: str | None = None,
) -> int:
    """Run the server until interrupted; returns the process exit code.

    ``engine`` picks the engine (``auto``: by the model's file type) and ``precision`` the
    torch engine's compute precision; see :func:`inference.engines.load_engine`.
    ``token_file`` (else ``$LOGLOG_TOKEN_FILE``) holds the control plane's bearer token;
    without one, binding a non-loopback ``host`` is refused (exit 2, with the fix)."""
    token_file = token_file or os.environ.get(TOKEN_ENV) or None
    try:
        token = load_token(token_file) if token_file else None
        require_token_for(host, token)
    except InferenceError as exc:
        sys.stderr.write(f"loglog serve: {exc}\n")
        return 2
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    options: dict[str, Any] = {"registry": registry}
    if "LOGLOG_LOKI_LABELS" not in os.environ:
        options["loki_labels"] = {"service": "inference"}
    loglog.configure(**options)
    loglog.install_stdlib(level="warning")
    log = loglog.get_logger("serve")
    if not port_free(host, port):
        sys.stderr.write(f"loglog serve: port {port} on {host} is taken; pass --port\n")
        return 2
    try:
        runtime = _runtime(model, config, registry, engine, precision)
    except InferenceError as exc:
        sys.stderr.write(f"loglog serve: {exc}\n")
        return 2

    shed_past_limit = runtime.metrics.requests_shed_total.labels("max_connections")

    def on_limit() -> None:
        if runtime.admission is not None:
            runtime.admission.count_shed("max_connections")  # counted and logged
        else:
            shed_past_limit.inc()

    try:  # the open-files limit is checked here, at start-up, not at the 300th connection
        limits = uvicorn_options(
            header_timeout=runtime.config.header_timeout_s,
            max_connections=runtime.config.max_connections,
            on_limit=on_limit,
        )
    except OpenFilesError as exc:
        sys.stderr.write(f"loglog serve: {exc}\n")
        runtime.stop()
        loglog.shutdown()
        return 2

    every_core = allowed_cores()
    if runtime.cores is not None:
        # serve() owns the process: the event loop, the runtime's start-up thread and the
        # stream decoders it spawns inherit this, so only the infer workers use the
        # engine's core (inference/tuning/affinity.py).
        why = pin_current_thread(runtime.cores.others)
        if why is not None:
            log.warning("the server runs unpinned", reason=why)

    def start_demo(ready: Runtime) -> None:
        assert ready.streams is not None
        for index in range(demo_streams):
            ready.streams.add(demo_source, f"demo-{index + 1}")

    app = create_app(
        runtime,
        allow_drills=allow_drills,
        on_ready=start_demo if demo_streams else None,
        token=token,
    )
    import uvicorn

    log.info(
        "serving",
        url=f"http://{host}:{port}",
        model=runtime.info.name,
        drills=allow_drills,
        token=token is not None,
    )
    # Uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal into
    # the handler that was there before it; with the default one the process would die
    # right there, before the logger is flushed. These handlers let serve() finish.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on", **limits
    )
    if runtime.cores is not None and every_core is not None:
        pin_current_thread(every_core)  # serve() returns the thread as it found it
    log.info("stopped")
    loglog.shutdown()
    return 0


def _runtime(
    model: str | None,
    config: str | None,
    registry: CollectorRegistry,
    engine: str,
    precision: str,
) -> Runtime:
    if engine == "auto" and precision == "auto":
        return Runtime(model=model, config_path=config, registry=registry)
    from ..config import RuntimeConfig, load_config
    from ..engines import load_engine

    # The config is read once here, for engine_threads, and handed to the runtime.
    settings = load_config(config) if config else RuntimeConfig()
    chosen = load_engine(model, kind=engine, precision=precision, threads=settings.engine_threads)
    return Runtime(
        model=model, engine=chosen, config=settings, config_path=config, registry=registry
    )
