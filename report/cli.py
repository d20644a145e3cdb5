"""``loglog report``: write the HTML (and PDF) report of a Prometheus server's last range.

With no flags it reads the Prometheus of ``loglog up`` (its default port) and writes into
``loglog up``'s state directory, so a running embedded stack gets a report on demand (the
CLI, :mod:`stack.cli`, passes those defaults in).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from . import prom
from .errors import OutputError, ReportError
from .model import Report
from .units import parse_range


def add_parser(sub: Any, *, prometheus: str, out: Path) -> None:
    """``loglog report``; ``prometheus`` and ``out`` are the defaults of its --prometheus
    and --out (the CLI passes ``loglog up``'s: report/ knows nothing of the stack)."""
    parser = sub.add_parser("report", help="write an HTML (and PDF) report for managers")
    parser.add_argument(
        "--prometheus", default=prometheus, help=f"Prometheus URL (default: {prometheus})"
    )
    parser.add_argument(
        "--range", default="1h", help="how far back: 1h, 24h, 7d, 2w … (default: 1h)"
    )
    parser.add_argument("--end", type=float, help="end of the range, unix seconds (default: now)")
    parser.add_argument("--out", type=Path, default=out, help=f"directory (default: {out})")
    parser.add_argument("--pdf", action="store_true", help="also write a PDF")
    limits = parser.add_argument_group("limits on each Prometheus query")
    limits.add_argument(
        "--timeout",
        type=float,
        default=prom.TIMEOUT,
        help=f"seconds for a whole answer, however slowly it arrives (default: {prom.TIMEOUT:g})",
    )
    limits.add_argument(
        "--max-answer-mb",
        type=float,
        default=prom.MAX_BYTES / 2**20,
        help=f"largest answer read, MiB (default: {prom.MAX_BYTES / 2**20:g})",
    )
    limits.add_argument(
        "--max-series",
        type=int,
        default=prom.MAX_SERIES,
        help=f"most series one query may answer (default: {prom.MAX_SERIES})",
    )
    parser.set_defaults(run=run, extra="report")


def make(
    prometheus: str,
    *,
    range_text: str,
    out: Path,
    pdf: bool,
    end: float | None = None,
    say: TextIO = sys.stdout,
    timeout: float = prom.TIMEOUT,
    max_answer_mb: float = prom.MAX_BYTES / 2**20,
    max_series: int = prom.MAX_SERIES,
) -> list[Path]:
    """Query, render, write; returns the files written. Raises ``ReportError``."""
    from . import sections

    try:
        range_seconds = parse_range(range_text)
    except ValueError as exc:
        raise ReportError(str(exc)) from exc
    _check_limits(timeout, max_answer_mb, max_series)
    end = time.time() if end is None else end
    _check_end(end, range_seconds, range_text)
    client = prom.Prometheus(
        prometheus,
        timeout=timeout,
        max_bytes=int(max_answer_mb * 2**20),
        max_series=max_series,
    )
    report = sections.build(client, end=end, range_seconds=range_seconds)
    written = write(report, out, name=f"loglog-report-{range_text}", pdf=pdf)
    for path in written:
        say.write(f"wrote {path}\n")
    return written


def _check_limits(timeout: float, max_answer_mb: float, max_series: int) -> None:
    """The limits are positive and finite (a NaN timeout would wait forever)."""
    for flag, value, most in (
        ("--timeout", timeout, 86400.0),
        ("--max-answer-mb", max_answer_mb, 65536.0),
        ("--max-series", float(max_series), 10.0**7),
    ):
        if not 0 < value <= most:
            raise ReportError(f"{flag} {value!r} is out of range: pass a number in (0, {most:g}]")


def _check_end(end: float, range_seconds: int, range_text: str) -> None:
    """``--end`` must be a date (finite, within the calendar) and the range must not reach
    before 1970: checked before any query, not by an OverflowError when the file is named."""
    try:
        datetime.fromtimestamp(end, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ReportError(
            f"--end {end!r} is not a time: pass unix seconds, e.g. --end {time.time():.0f}"
        ) from exc
    if end - range_seconds < 0:
        raise ReportError(
            f"range {range_text!r} before --end {end:.0f} starts before 1970: pass a shorter "
            "--range or a later --end"
        )


def write(report: Report, out: Path, *, name: str, pdf: bool) -> list[Path]:
    """Render ``report`` into ``out`` as NAME-<end time>.html (and .pdf); ``OutputError``
    when the directory cannot be made or written. A reader never sees half a file."""
    from . import html

    stamp = datetime.fromtimestamp(report.end, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out / f"{name}-{stamp}"
    written = [base.with_suffix(".html")]
    try:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(written[0], html.render(report).encode())
        if pdf:
            from . import pdf as pdf_writer

            written.append(base.with_suffix(".pdf"))
            partial = written[1].with_name(written[1].name + ".partial")
            try:
                pdf_writer.write(report, partial)
                os.replace(partial, written[1])
            finally:
                partial.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot write the report into {out}: {exc.strerror or exc}. Pass --out DIR with a "
            "writable directory that has space."
        ) from exc
    return written


def _atomic_write(path: Path, data: bytes) -> None:
    """A reader never sees half a report: write aside, then rename over."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    try:
        make(
            args.prometheus,
            range_text=args.range,
            out=args.out,
            pdf=args.pdf,
            end=args.end,
            timeout=args.timeout,
            max_answer_mb=args.max_answer_mb,
            max_series=args.max_series,
        )
    except ReportError as exc:
        print(f"loglog report: {exc}", file=sys.stderr)
        return 1
    return 0
