"""The logger alone, as `pip install loglog` leaves it: every third-party package is made
unimportable in a fresh interpreter (a meta-path blocker), then loglog logs, and each
feature and subcommand that needs an extra says which in one line."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_code

pytestmark = pytest.mark.slow

#: Makes every module that is neither the standard library's nor ours unimportable.
BLOCKER = """
import sys
OURS = {"loglog", "inference", "agent", "dashboards", "alerts", "stack", "report", "fleet", "tests"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in OURS or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Blocker())
"""


def test_the_logger_alone_logs_to_stderr_and_a_file(tmp_path) -> None:
    """import loglog, configure, log, flush: nothing of a third party is imported."""
    out = run_code(
        BLOCKER
        + f"""
import loglog
loglog.configure(console="text", file={str(tmp_path / "app.log")!r})
loglog.get_logger("bare").warning("hello alone", n=1)
assert loglog.flush(timeout=5)
stats = loglog.stats_typed()
print(stats.emitted["warning"], loglog.stats()["emitted"]["warning"])
loglog.shutdown()
third = sorted(m for m in sys.modules if m.split(".")[0] not in sys.stdlib_module_names
               and m.split(".")[0] not in OURS and not m.startswith("_"))
print("third-party:", third)
"""
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hello alone" in out.stderr
    assert "1 1" in out.stdout and "third-party: []" in out.stdout, out.stdout
    line = json.loads((tmp_path / "app.log").read_text().splitlines()[0])
    assert line["msg"] == "hello alone" or "hello alone" in json.dumps(line)


def test_a_feature_whose_extra_is_missing_says_which_in_one_line() -> None:
    """The Prometheus collector and the OTLP sink, without their packages."""
    out = run_code(
        BLOCKER
        + """
import loglog
try:
    import loglog.metrics
except ImportError as exc:
    print("metrics:", exc)
try:
    loglog.configure(otlp_endpoint="http://127.0.0.1:4318/v1/logs", console=None)
except loglog.ConfigError as exc:
    print("otlp:", exc)
"""
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "metrics: loglog.metrics needs the 'prometheus' extra: in loglog's checkout, pip install '.[prometheus]'",
        "otlp: loglog's otlp_endpoint needs the 'otlp' extra: in loglog's checkout, pip install '.[otlp]'",
    ]


COMMANDS = {
    "serve": ([], "serve"),
    "profile": ([], "serve"),
    "loadgen": (["--rps", "1"], "serve"),
    "up": ([], "serve,agent"),
    "agent": ([], "agent"),
    "receiver": ([], "serve"),  # Starlette on uvicorn (httpkit)
    "dashboards": (["generate"], "dashboards"),
    "report": ([], "report"),
    "worker": ([], "fleet"),
    "jobs": (["serve"], "fleet"),
}


def test_each_subcommand_whose_extra_is_missing_exits_2_with_one_line() -> None:
    """`loglog COMMAND` on the logger alone: status 2, one stderr line naming the extra,
    no traceback; `loglog --help` still lists every subcommand."""
    out = run_code(
        BLOCKER
        + f"""
import contextlib, io, json
from stack.cli import build_parser, main
results = {{}}
for command, (args, _) in {COMMANDS!r}.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([command, *args])
    results[command] = [code, err.getvalue()]
print(json.dumps(results))
print(build_parser().format_help())
"""
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.splitlines()[0])
    for command, (_, extra) in COMMANDS.items():
        code, err = results[command]
        plural = "s" if "," in extra else ""
        expected = f"loglog {command} needs the '{extra}' extra{plural}: in loglog's checkout, pip install '.[{extra}]'\n"
        assert (code, err) == (2, expected), command
    for command in (*COMMANDS, "receiver"):
        assert command in out.stdout
