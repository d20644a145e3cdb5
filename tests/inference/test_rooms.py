"""The rooms of ``inference/`` stand on floors: no import runs up or sideways.

A module imports only from its own room or from a room on a lower floor (the plan is
drawn in ``inference/__init__.py``). Every import counts: at module level, inside a
function, under ``TYPE_CHECKING``; the two arrows that run up are named below with their
reason, so a new one is a decision, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "inference"

#: The modules at the top of ``inference/`` that form one room, the package's vocabulary.
VOCABULARY = frozenset({"types", "errors", "metrics", "config"})

#: room → floor. A room is a sub-package, the vocabulary, or the composition root.
FLOORS = {
    "vocabulary": 1,
    "media": 2,
    "analysis": 2,
    "tuning": 2,
    "engines": 2,
    "core": 3,
    "feed": 4,
    "runtime": 5,
    "server": 6,
    "tools": 6,
}

#: (importer, imported) → why this arrow may run up.
UPWARD = {
    ("inference.types", "inference.core.stages"): (
        "PIPELINE's factories build the stage callables when a pipeline is built"
    ),
    ("inference.metrics", "inference.analysis.stats"): "a type annotation (TYPE_CHECKING)",
}


def module_name(path: Path, root: Path = ROOT) -> str:
    """``inference/core/pipeline.py`` → ``inference.core.pipeline``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every ``inference`` module that ``path`` imports, anywhere in it;
    ``from X import y`` names ``X.y`` where that is a module of the package."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                where = root / Path(*child.split("."))
                is_module = where.with_suffix(".py").exists() or where.is_dir()
                found.append((node.lineno, child if is_module else base))
    return [(line, mod) for line, mod in found if mod.split(".")[0] == "inference"]


def room(module: str) -> str | None:
    """The room of ``inference.core.pipeline`` is ``core``, of ``inference.types`` the
    vocabulary; the package itself has none."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return "vocabulary" if parts[1] in VOCABULARY else parts[1]


def violations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Every import from a room on a higher floor, or from another room on the same one."""
    found = []
    for path in paths:
        importer = module_name(path, root)
        for line, imported in imports(path, root):
            here, there = room(importer), room(imported)
            if here is None or there is None or here == there:
                continue
            if (importer, imported) in UPWARD:
                continue
            if FLOORS[there] >= FLOORS[here]:
                found.append(
                    f"{path.relative_to(root)}:{line}: {importer} (floor {FLOORS[here]}) "
                    f"imports {imported} (floor {FLOORS[there]})"
                )
    return found


def sources() -> list[Path]:
    """Every module of the package."""
    return sorted(PACKAGE.rglob("*.py"))


def test_every_room_has_a_floor() -> None:
    """Each sub-package and top-level module of ``inference/`` is placed on a floor: a new
    room cannot slip in beside the plan."""
    rooms = {room(module_name(path)) for path in sources()} - {None}
    assert rooms == set(FLOORS)


def test_no_import_runs_up_or_sideways() -> None:
    """No module of ``inference/`` imports from a higher floor or from a neighbour room on
    its own floor, except the arrows named in ``UPWARD``."""
    found = violations(sources())
    assert not found, "move the code down, or pass it in from above:\n" + "\n".join(found)


def test_the_named_upward_arrows_still_exist() -> None:
    """An exception that no longer happens is removed from ``UPWARD``, not kept as a door."""
    seen = {(module_name(path), mod) for path in sources() for _, mod in imports(path)}
    assert set(UPWARD) <= seen


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("core/x.py", "from ..runtime import Runtime\n", "inference.runtime (floor 5)"),
        ("core/x.py", "def f():\n    from ..feed import pool\n", "inference.feed.pool (floor 4)"),
        ("media/x.py", "from ..analysis import stats\n", "inference.analysis.stats (floor 2)"),
        ("types.py", "from inference.server.app import build\n", "inference.server.app"),
    ],
)
def test_the_scanner_finds_an_arrow_up_or_sideways(
    tmp_path: Path, where: str, source: str, expected: str
) -> None:
    """The check itself can fail: relative, absolute and function-level imports of a
    higher or neighbouring room are each reported."""
    fake = tmp_path / "inference" / where
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    for sub in ("runtime.py", "feed/pool.py", "analysis/stats.py", "server/app.py"):
        (tmp_path / "inference" / sub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "inference" / sub).write_text("")
    (found,) = violations([fake], tmp_path)
    assert expected in found
