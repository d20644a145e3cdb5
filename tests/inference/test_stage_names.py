"""The stage is the whole unit: only :data:`inference.types.PIPELINE` names stages.

Every other module asks a :class:`~inference.types.StageSpec` (batched, sourced, remote,
band, drill point) or a role derived from PIPELINE (``ENGINE_STAGE``, ``SOURCE_STAGE``,
``LAST_STAGE``, ``REMOTE_STAGES``) what a stage does: renaming or adding a stage is an
edit of PIPELINE, not a hunt through the runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from inference.types import PIPELINE, STAGES

ROOT = Path(__file__).resolve().parents[2]
#: The packages that must not spell a stage's name (the declaration itself excepted).
PACKAGES = ("inference", "fleet", "stack", "report", "agent", "hardware")
DECLARATION = ROOT / "inference" / "types.py"


def stage_literals(source: str) -> list[tuple[int, str]]:
    """(line, name) of every string constant in ``source`` that is exactly a stage's name
    (a comparison, a lookup, a dict key, a default: all the same side door)."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STAGES
    ]


def test_the_scanner_finds_a_comparison_with_a_stage_name() -> None:
    """The check itself can fail: a comparison, a lookup and a default are each found."""
    source = (
        'if stage == "infer":\n    pass\n'
        'x = counters["decode"]\n'
        'def f(batched: str = "encode") -> None: ...\n'
        'y = f"{a} decode"\n'
    )
    assert stage_literals(source) == [(1, "infer"), (3, "decode"), (4, "encode")]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_outside_pipeline_names_a_stage(package: str) -> None:
    """No stage name is spelled in the source of ``package`` outside PIPELINE."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name!r}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != DECLARATION
        for line, name in stage_literals(path.read_text())
    ]
    assert not found, "ask the StageSpec (inference.types.PIPELINE) instead:\n" + "\n".join(found)


def test_every_stage_declares_what_the_runtime_asks_of_it() -> None:
    """Each spec carries its factory and band; exactly one stage is batched (the
    engine's) and one is run by sources; the remote stages are a prefix of PIPELINE."""
    assert all(callable(spec.factory) and 0 < spec.band[0] < spec.band[1] for spec in PIPELINE)
    assert sum(spec.batched for spec in PIPELINE) == 1
    assert sum(spec.sourced for spec in PIPELINE) == 1
    remote = [spec.name for spec in PIPELINE if spec.remote]
    assert remote == list(STAGES[: len(remote)])
