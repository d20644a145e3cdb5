"""``loglog worker`` and ``loglog jobs submit|ls|watch|serve``.

::

    loglog jobs serve --broker amqp://guest:guest@127.0.0.1:5672// --port 8100
    loglog worker --broker amqp://guest:guest@127.0.0.1:5672// --gpu 0
    loglog jobs submit archive/*.mp4
    loglog jobs ls --state running
    loglog jobs watch JOB_ID
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_API = "http://127.0.0.1:8100"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_STORE = "redis://127.0.0.1:6379/0"


def add_parser(sub: Any) -> None:
    """Add ``worker`` and ``jobs`` to the ``loglog`` command."""
    worker = sub.add_parser("worker", help="a fleet worker: runs job segments from the broker")
    _common(worker)
    worker.add_argument("--gpu", type=int, help="the GPU index this process uses (one per GPU)")
    worker.add_argument("--name", default="", help="default: worker-HOST-PID")
    worker.add_argument("--metrics-host", default="127.0.0.1")
    worker.add_argument("--metrics-port", type=int, default=0, help="0 = any free port")
    worker.add_argument("--heartbeat", type=float, default=5.0, help="seconds between beats")
    worker.add_argument("--model", help="an .onnx file or TensorRT engine (default: built-in)")
    worker.add_argument("--config", help="runtime config (YAML/TOML) for the pipeline")
    worker.set_defaults(run=_worker)

    jobs = sub.add_parser("jobs", help="submit, list and watch analysis jobs")
    cmd = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    serve = cmd.add_parser("serve", help="run the jobs API")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument("--segment-seconds", type=float, default=10.0)
    serve.set_defaults(run=_serve)
    submit = cmd.add_parser("submit", help="submit one job per file")
    submit.add_argument("sources", nargs="+", metavar="FILE")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--api", default=DEFAULT_API)
    submit.set_defaults(run=_submit)
    ls = cmd.add_parser("ls", help="list jobs")
    ls.add_argument("--state")
    ls.add_argument("--api", default=DEFAULT_API)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=_ls)
    watch = cmd.add_parser("watch", help="a progress bar until the job ends")
    watch.add_argument("job")
    watch.add_argument("--api", default=DEFAULT_API)
    watch.add_argument("--interval", type=float, default=1.0)
    watch.set_defaults(run=_watch)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"default: {DEFAULT_BROKER}")
    parser.add_argument(
        "--store", default=DEFAULT_STORE, help=f"Redis URL; default {DEFAULT_STORE}"
    )
    parser.add_argument("--prefix", default="loglog:fleet", help="key prefix in the store")
    parser.add_argument("--queue", default="loglog.segments")
    parser.add_argument("--results-dir", type=Path, default=Path("fleet-results"),
                        help="results: storage every worker and the API share")  # fmt: skip


def _worker(args: argparse.Namespace) -> int:
    import loglog

    from .errors import FleetError
    from .worker import WorkerConfig, run_worker

    loglog.configure(console="text")
    try:
        config = WorkerConfig(
            broker=args.broker, store=args.store, prefix=args.prefix, queue=args.queue,
            results_dir=args.results_dir, name=args.name, gpu=args.gpu,
            metrics_host=args.metrics_host, metrics_port=args.metrics_port,
            heartbeat_s=args.heartbeat, model=args.model, runtime_config=args.config,
        )  # fmt: skip
        return run_worker(config)
    except FleetError as exc:
        print(f"loglog worker: {exc}", file=sys.stderr)
        return 2
    finally:
        loglog.shutdown()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    import loglog

    from .api import create_app
    from .celeryapp import make_app
    from .dispatch import Dispatcher
    from .errors import FleetError
    from .store import JobStore

    loglog.configure(console="text")
    try:
        store = JobStore.connect(args.store, prefix=args.prefix)
        dispatcher = Dispatcher(make_app(args.broker, args.queue), store, queue=args.queue,
                                segment_seconds=args.segment_seconds)  # fmt: skip
    except FleetError as exc:
        print(f"loglog jobs serve: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(dispatcher), host=args.host, port=args.port, log_level="warning")
    loglog.shutdown()
    return 0


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(
            f"cannot reach the jobs API at {url}: {exc}. Is `loglog jobs serve` running?"
        ) from exc
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:  # a proxy's error page, or another server on that port
        raise SystemExit(
            f"{url} answered HTTP {status} and no JSON: is `loglog jobs serve` running "
            "there (check --api)?"
        ) from exc
    if status >= 400 and not isinstance(body, dict):
        body = {"error": f"HTTP {status}: {body}"}
    elif status >= 400 and "error" not in body:
        # FastAPI's own errors (a route not found, a body it could not parse) say "detail".
        body = {"error": f"HTTP {status}: {body.get('detail', body)}"}
    return status, body


def _submit(args: argparse.Namespace) -> int:
    code = 0
    for source in args.sources:
        path = Path(source)
        full = str(path.resolve()) if path.exists() else source
        status, body = _call(
            "POST", f"{args.api}/v1/jobs", {"source": full, "priority": args.priority}
        )
        if status == 202:
            size = f"{body['total_frames']} frames in {body['segments']} segments"
            print(f"{body['id']}  {size}  {full}")
        else:
            print(f"rejected {source}: {body.get('error')}", file=sys.stderr)
            code = 1
    return code


def _ls(args: argparse.Namespace) -> int:
    query = f"?state={args.state}" if args.state else ""
    status, body = _call("GET", f"{args.api}/v1/jobs{query}")
    if status != 200:
        print(body.get("error"), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body["jobs"], indent=2))
        return 0
    print(f"{'ID':<18} {'STATE':<10} {'PROGRESS':>8} {'FRAMES':>13} {'ETA':>8}  SOURCE")
    for job in body["jobs"]:
        eta = f"{job['eta_seconds']:.0f}s" if job["eta_seconds"] is not None else "-"
        frames = f"{job['frames_done']}/{job['total_frames']}"
        head = f"{job['id']:<18} {job['state']:<10} {job['progress']:>8.1%}"
        print(f"{head} {frames:>13} {eta:>8}  {job['source']}")
    return 0


def progress_bar(job: dict[str, Any], width: int = 30) -> str:
    """One line: ``[#######.....]  42.0%  420/1000 frames  ETA 12s  running``."""
    filled = round(job["progress"] * width)
    eta = f"ETA {job['eta_seconds']:.0f}s" if job.get("eta_seconds") is not None else "ETA -"
    bar = f"[{'#' * filled}{'.' * (width - filled)}] {job['progress']:6.1%}"
    line = f"{bar}  {job['frames_done']}/{job['total_frames']} frames  {eta}  {job['state']}"
    return line + (f"  error: {job['error']}" if job.get("error") else "")


def _watch(args: argparse.Namespace) -> int:
    while True:
        # Quoted to one path segment: "x?y" must not watch job "x".
        status, job = _call("GET", f"{args.api}/v1/jobs/{urllib.parse.quote(args.job, safe='')}")
        if status != 200:
            print(job.get("error"), file=sys.stderr)
            return 1
        print("\r" + progress_bar(job), end="", flush=True)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            print()
            if job.get("result"):
                print(f"results: {job['result']}")
            return 0 if job["state"] == "succeeded" else 1
        time.sleep(args.interval)
