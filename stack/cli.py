"""The ``loglog`` command: one entry point, a subcommand per part of the stack.

::

    loglog up         the embedded stack (Prometheus, Alertmanager, inference, agent)
    loglog serve      the inference server
    loglog profile    per-stage table and bottleneck verdict of a running server
    loglog loadgen    load: requests per second, or streams
    loglog agent      the node agent (GPU via NVML, host, watched processes)
    loglog receiver   the Alertmanager webhook receiver
    loglog dashboards generate / push
    loglog report     an HTML (and PDF) report for managers
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _up(args: argparse.Namespace) -> int:
    from stack.up import run

    return run(args)


def _serve(args: argparse.Namespace) -> int:
    from inference.server.main import serve

    return serve(
        config=args.config,
        model=args.model,
        host=args.host,
        port=args.port,
        allow_drills=args.allow_drills,
        demo_streams=args.demo_streams,
        demo_source=args.demo_source,
        engine=args.engine,
        precision=args.precision,
        token_file=args.token_file,
    )


def _profile(args: argparse.Namespace) -> int:
    from inference.tools.profile import main

    return main(
        url=args.url,
        prometheus=args.prometheus,
        interval=args.interval,
        window=args.window,
        as_json=args.json,
        agent=args.agent,
    )


def _loadgen(args: argparse.Namespace) -> int:
    from inference.tools.loadgen import main

    return main(
        url=args.url,
        rps=args.rps,
        streams=args.streams,
        duration=args.duration,
        source=args.source,
        pushgateway=args.pushgateway,
        image=args.image,
        max_in_flight=args.max_in_flight,
        slo_ms=args.slo_ms,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loglog", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the inference server")
    serve.add_argument("--config", help="YAML or TOML runtime config (reloaded when it changes)")
    serve.add_argument(
        "--model", help="an .onnx, TensorRT or PyTorch .pt/.pt2 file (default: built-in CNN)"
    )
    serve.add_argument(
        "--engine",
        choices=("auto", "onnxruntime", "tensorrt", "torch"),
        default="auto",
        help="engine (default: by the model's file type; torch runs the built-in CNN in PyTorch)",
    )
    serve.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="torch engine precision (default: fp16 on CUDA, fp32 on CPU)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--allow-drills", action="store_true", help="enable POST /v1/drills")
    serve.add_argument("--demo-streams", type=int, default=0, help="start N synthetic streams")
    serve.add_argument("--demo-source", default="synthetic://640x480@15")
    serve.add_argument(
        "--token-file",
        help="bearer token for streams/drills (required off loopback; env LOGLOG_TOKEN_FILE)",
    )
    serve.set_defaults(run=_serve, extra="serve")

    profile = sub.add_parser("profile", help="per-stage table and bottleneck verdict")
    target = profile.add_mutually_exclusive_group()
    target.add_argument("--url", default="http://127.0.0.1:8000", help="the server to profile")
    target.add_argument("--prometheus", help="read the same numbers from a Prometheus server")
    profile.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes")
    profile.add_argument(
        "--window", default="1m", help="rate window for --prometheus (PromQL duration)"
    )
    profile.add_argument(
        "--agent",
        help="the node agent on the server's host (http://127.0.0.1:9400, or its /metrics "
        "URL): its CPU counters tell CPU contention from a slow device (without it: unknown)",
    )
    profile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    profile.set_defaults(run=_profile, extra="serve")

    loadgen = sub.add_parser("loadgen", help="generate load against a server")
    loadgen.add_argument("--url", default="http://127.0.0.1:8000")
    mode = loadgen.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--rps",
        help="POST /v1/infer at this many requests/s, or a multiple of the server's HTTP "
        "capacity (1.5x: 1.5 × (calibrated capacity − the live streams' frames))",
    )
    mode.add_argument("--streams", type=int, help="run this many synthetic streams")
    loadgen.add_argument("--duration", type=float, default=30.0, help="seconds")
    loadgen.add_argument("--source", default="synthetic://640x480@15", help="for --streams")
    loadgen.add_argument("--pushgateway", help="push the run's summary to this Pushgateway")
    loadgen.add_argument(
        "--image", choices=("jpeg", "png"), default="jpeg", help="for --rps: the body's format"
    )
    loadgen.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        help="for --rps: requests in flight at most; one due past it is counted, not sent",
    )
    loadgen.add_argument(
        "--slo-ms",
        type=float,
        help="for --rps: a 2xx later than this is not goodput (default: the server's SLO)",
    )
    loadgen.set_defaults(run=_loadgen, extra="serve")

    from agent.cli import add_parser as add_agent
    from dashboards.cli import add_parser as add_dashboards
    from fleet.cli import add_parser as add_fleet
    from report.cli import add_parser as add_report
    from stack.options import Options, default_state_dir
    from stack.options import add_parser as add_up
    from stack.receiver_cli import add_parser as add_receiver

    up = Options(state_dir=default_state_dir())
    add_up(sub).set_defaults(run=_up)
    add_agent(sub)
    add_receiver(sub)
    add_dashboards(sub)
    add_report(
        sub, prometheus=f"http://{up.host}:{up.prometheus_port}", out=up.state_dir / "reports"
    )
    add_fleet(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from loglog.errors import ConfigError, MissingExtra
    from loglog.redact import redact

    from .extras import require

    if argv is None:  # the command line, not a test calling main([...]) in its process
        from .proctitle import set_title

        set_title(sys.argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        extra = getattr(args, "extra", None)  # declared with the subcommand
        if extra:
            require(extra, what=f"loglog {args.command}")
        return int(args.run(args) or 0)
    except MissingExtra as exc:
        # A logger-only install (`pip install loglog`): one line naming the extra.
        sys.stderr.write(f"{exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `loglog jobs ls | head`: the reader is gone. Exit as a shell's pipeline member
        # does (128 + SIGPIPE), quietly; stdout goes to /dev/null so the interpreter's
        # final flush does not print a second traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except ConfigError as exc:
        # A bad LOGLOG_* setting (e.g. LOGLOG_LOKI_URL): the fix, with any password in
        # it redacted, instead of a traceback that prints the password.
        sys.stderr.write(f"loglog {args.command}: {redact(str(exc))}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
