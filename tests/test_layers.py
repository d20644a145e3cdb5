"""Which package may import which: no circles, and shared homes that depend on nothing
of ours. (``loglog report`` takes its defaults from the CLI, so report/ needs no stack/.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported(package: str) -> set[str]:
    """Every top-level package a module of ``package`` imports (absolute imports)."""
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_report_imports_nothing_of_the_stack() -> None:
    """report/cli.py read stack.up for the default Prometheus URL and state directory,
    while stack/cli.py imports report.cli: a package circle."""
    assert "stack" not in imported("report")


def test_httpkit_imports_nothing_of_ours() -> None:
    """httpkit is under every server (inference, jobs API, agent, receiver): it may
    depend on libraries only, or it would pull one server's package into another's."""
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "httpkit"}
    assert not imported("httpkit") & ours
