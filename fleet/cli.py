"""``loglog worker`` and ``loglog jobs submit|ls|watch|serve``.

::

    loglog jobs serve --broker amqp://guest:guest@127.0.0.1:5672// --port 8100 \
        --source-dir /srv/videos [--host 0.0.0.0 --token-file FILE]
    loglog worker --broker amqp://guest:guest@127.0.0.1:5672// --gpu 0
    loglog jobs submit archive/*.mp4
    loglog jobs ls --state running
    loglog jobs watch JOB_ID
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from inference.media.access import SourcePolicy
from inference.server.auth import TOKEN_ENV

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
    worker.set_defaults(run=_worker, extra="fleet")

    jobs = sub.add_parser("jobs", help="submit, list and watch analysis jobs")
    cmd = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    serve = cmd.add_parser("serve", help="run the jobs API")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument("--segment-seconds", type=float, default=10.0)
    _token_file(serve, "the bearer token POST/DELETE /v1/jobs need (required off loopback)")
    serve.add_argument(
        "--source-dir",
        action="append",
        dest="source_dirs",
        metavar="DIR",
        help="a directory job files may be read from (repeat; default: .)",
    )
    serve.add_argument(
        "--source-host",
        action="append",
        dest="source_hosts",
        default=[],
        metavar="HOST|CIDR",
        help="a private/loopback network source host to "
        "allow (repeat; default: public addresses only)",
    )
    serve.add_argument(
        "--source-schemes",
        default=",".join(SourcePolicy.schemes),
        help="comma-separated source schemes allowed (default: %(default)s)",
    )
    serve.set_defaults(run=_serve, extra="fleet")
    submit = cmd.add_parser("submit", help="submit one job per file")
    submit.add_argument("sources", nargs="+", metavar="FILE")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--api", default=DEFAULT_API)
    _token_file(submit)
    submit.set_defaults(run=_submit)
    ls = cmd.add_parser("ls", help="list jobs")
    ls.add_argument("--state")
    ls.add_argument("--api", default=DEFAULT_API)
    ls.add_argument("--json", action="store_true")
    _token_file(ls)
    ls.set_defaults(run=_ls)
    watch = cmd.add_parser("watch", help="a progress bar until the job ends")
    watch.add_argument("job")
    watch.add_argument("--api", default=DEFAULT_API)
    _token_file(watch)
    watch.add_argument("--interval", type=float, default=1.0)
    watch.set_defaults(run=_watch)


def _token_file(parser: argparse.ArgumentParser, what: str = "the jobs API's bearer token") -> None:
    parser.add_argument("--token-file", default=None, metavar="FILE",
                        help=f"{what}; env {TOKEN_ENV}")  # fmt: skip


def auth_headers(token_file: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token_file`` (else ``$LOGLOG_TOKEN_FILE``);
    empty without one. Exits with the fix when the file is unusable."""
    from inference.errors import ConfigError
    from inference.server.auth import load_token

    token_file = token_file or os.environ.get(TOKEN_ENV) or None
    if not token_file:
        return {}
    try:
        return {"authorization": f"Bearer {load_token(token_file)}"}
    except ConfigError as exc:
        # Exit 2, like every other bad option (SystemExit with a message exits 1).
        print(f"loglog jobs: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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


def source_policy(args: argparse.Namespace) -> SourcePolicy:
    """The API's source allow-list from ``jobs serve``'s options. Directories are made
    absolute here: a refusal names them, and "source_dirs (.)" told nobody which one."""
    schemes = tuple(s.strip() for s in args.source_schemes.split(",") if s.strip())
    dirs = tuple(os.path.abspath(d) for d in args.source_dirs or ["."])
    return SourcePolicy(schemes=schemes, hosts=tuple(args.source_hosts), file_dirs=dirs)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    import loglog
    from inference.errors import InferenceError
    from inference.server.auth import load_token, require_token_for

    from .api import create_app, server_options
    from .celeryapp import make_app
    from .dispatch import Dispatcher
    from .errors import FleetError
    from .store import JobStore

    # Config errors fail here, before anything connects: the message is the fix.
    token_file = args.token_file or os.environ.get(TOKEN_ENV) or None
    try:
        token = load_token(token_file) if token_file else None
        require_token_for(args.host, token, exposes="the jobs API (submit, cancel)")
        policy = source_policy(args)
    except InferenceError as exc:
        print(f"loglog jobs serve: {exc}", file=sys.stderr)
        return 2
    loglog.configure(console="text")
    try:
        store = JobStore.connect(args.store, prefix=args.prefix)
        dispatcher = Dispatcher(make_app(args.broker, args.queue), store, queue=args.queue,
                                segment_seconds=args.segment_seconds)  # fmt: skip
    except FleetError as exc:
        print(f"loglog jobs serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(dispatcher, token=token, policy=policy)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **server_options())
    loglog.shutdown()
    return 0


def _call(
    method: str, url: str, body: dict[str, Any] | None = None, token_file: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", **auth_headers(token_file)}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
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
        full = _resolved(source)
        status, body = _call(
            "POST",
            f"{args.api}/v1/jobs",
            {"source": full, "priority": args.priority},
            args.token_file,
        )
        if status == 202:
            print(f"{body['id']}  {job_size(body['total_frames'], body['segments'])}  {full}")
        else:
            print(f"rejected {source}: {body.get('error')}", file=sys.stderr)
            code = 1
    return code


def job_size(frames: int, segments: int) -> str:
    """ "7200 frames in 1 segment" — the submit line's size, in singular where it is one."""
    return (
        f"{frames} frame{'' if frames == 1 else 's'} in "
        f"{segments} segment{'' if segments == 1 else 's'}"
    )


def _resolved(source: str) -> str:
    """A path (no scheme) is the user's, relative to their directory: resolved here even when
    it does not exist, so the API says "no such video file" for it rather than resolving it
    in its own directory and refusing it as outside source_dirs. Anything else (a URL, no
    text, a path the OS cannot take) goes as given, for the API to judge."""
    if "://" in source or not source.strip():
        return source
    try:
        return str(Path(source).resolve())
    except (OSError, ValueError):
        return source


def _ls(args: argparse.Namespace) -> int:
    query = f"?state={args.state}" if args.state else ""
    status, body = _call("GET", f"{args.api}/v1/jobs{query}", token_file=args.token_file)
    if status != 200:
        print(body.get("error"), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body["jobs"], indent=2))
        return 0
    print(f"{'ID':<18} {'STATE':<10} {'PROGRESS':>8} {'FRAMES':>13} {'ETA':>9}  SOURCE")
    for job in body["jobs"]:
        frames = f"{job['frames_done']}/{job['total_frames']}"
        head = f"{job['id']:<18} {job['state']:<10} {job['progress']:>8.1%}"
        print(f"{head} {frames:>13} {eta_text(job):>9}  {job['source']}")
    return 0


def eta_text(job: dict[str, Any]) -> str:
    """``12s``; ``stalled`` (no frame analysed for a minute) or ``measuring`` (just
    started or resumed) instead of a number nobody should trust; ``-`` when not running."""
    if job.get("eta_seconds") is not None:
        return f"{job['eta_seconds']:.0f}s"
    return str(job.get("eta_status") or "-")


def progress_bar(job: dict[str, Any], width: int = 30) -> str:
    """One line: ``[#######.....]  42.0%  420/1000 frames  ETA 12s  running`` (``ETA
    stalled``, ``ETA measuring`` or ``ETA -``: see :func:`eta_text`)."""
    filled = round(job["progress"] * width)
    eta = f"ETA {eta_text(job)}"
    bar = f"[{'#' * filled}{'.' * (width - filled)}] {job['progress']:6.1%}"
    line = f"{bar}  {job['frames_done']}/{job['total_frames']} frames  {eta}  {job['state']}"
    return line + (f"  error: {job['error']}" if job.get("error") else "")


def _watch(args: argparse.Namespace) -> int:
    shown = 0  # length of the line on screen: a shorter one is padded to cover it
    while True:
        # Quoted to one path segment: "x?y" must not watch job "x".
        status, job = _call(
            "GET",
            f"{args.api}/v1/jobs/{urllib.parse.quote(args.job, safe='')}",
            token_file=args.token_file,
        )
        if status == 404 and str(job.get("error", "")).startswith("no job "):
            # The API's answer names its route; a CLI user lists jobs with the CLI.
            print(f"no job {args.job!r}: list jobs with `loglog jobs ls`", file=sys.stderr)
            return 1
        if status != 200:
            print(job.get("error"), file=sys.stderr)
            return 1
        line = progress_bar(job)
        print("\r" + line.ljust(shown), end="", flush=True)
        shown = len(line)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            print()
            if job.get("result"):
                print(f"results: {job['result']}")
            return 0 if job["state"] == "succeeded" else 1
        time.sleep(args.interval)
