"""The extras table cannot rot: every third-party import of each part of the code is
among the packages its extra installs (pyproject.toml), and the probes `loglog` checks
before a subcommand belong to that subcommand's extra."""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib.metadata
import io
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from loglog.errors import ConfigError, MissingExtra
from stack import cli, extras

ROOT = Path(__file__).resolve().parents[2]
#: Our packages, as pyproject ships them (a new package is checked the day it is added).
PACKAGES = tuple(
    name.rstrip("*")
    for name in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)
#: Import names of packages not installed here (so not in packages_distributions()).
NOT_INSTALLED_HERE = {"tensorrt": {"tensorrt"}}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _optional_dependencies() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == [], "the logger alone installs no third-party package"
    return dict(project["optional-dependencies"])


@functools.cache
def extra_packages(spec: str) -> set[str]:
    """The distributions ``spec`` (``"serve"`` or ``"serve,agent"``) names, with the
    extras it includes (``loglog[prometheus,otlp]``) expanded."""
    table = _optional_dependencies()
    found: set[str] = set()
    for extra in spec.split(","):
        for requirement in table[extra.strip()]:
            name = re.match(r"[A-Za-z0-9._-]+", requirement)
            assert name is not None, requirement
            if _normalise(name.group()) == "loglog":
                inner = re.search(r"\[([^\]]+)\]", requirement)
                assert inner is not None, requirement
                found |= extra_packages(inner.group(1))
            else:
                found.add(_normalise(name.group()))
    return found


@functools.cache
def distributions(top: str) -> set[str]:
    """The distributions that install import name ``top``."""
    known = _installed()
    names = known.get(top) or NOT_INSTALLED_HERE.get(top)
    assert names, f"{top!r} is installed by no distribution here: add it to NOT_INSTALLED_HERE"
    return {_normalise(name) for name in names}


@functools.cache
def _installed() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``if TYPE_CHECKING:`` or a ``try`` that handles ImportError."""
    child, parent = node, parents.get(node)
    while parent is not None:
        typing_only = isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test)
        if typing_only and child in parent.body:  # type: ignore[attr-defined]
            return True
        if isinstance(parent, ast.Try) and child in parent.body:
            caught = " ".join(ast.unparse(h.type) for h in parent.handlers if h.type)
            if "ImportError" in caught or "ModuleNotFoundError" in caught:
                return True
        child, parent = parent, parents.get(parent)
    return False


def third_party_imports() -> Iterator[tuple[str, str, int, str]]:
    """(module, file, line, import name) of every unguarded third-party import."""
    ours = set(PACKAGES)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "tests" in path.relative_to(ROOT).parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            tree = ast.parse(path.read_text(), str(path))
            parents = {
                child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ours or _guarded(node, parents):
                        continue
                    yield module, str(path.relative_to(ROOT)), node.lineno, name


def test_every_third_party_import_is_installed_by_the_extra_of_its_part() -> None:
    """Each unguarded import of a third-party package in a module is installed by the
    extra stack.extras.PARTS names for that module; the logger alone imports none."""
    problems = []
    seen = 0
    for module, path, line, name in third_party_imports():
        seen += 1
        part = extras.part_of(module)
        if part is None:
            problems.append(f"{path}:{line} imports {name}, but {module} is the logger alone")
            continue
        if not distributions(name.split(".")[0]) & extra_packages(part):
            problems.append(f"{path}:{line} imports {name}: not in the '{part}' extra")
    assert seen > 50  # the walk found the imports it is meant to check
    assert not problems, "\n".join(problems)


def test_the_check_sees_an_import_that_no_extra_installs(tmp_path: Path) -> None:
    """The check above can fail: matplotlib is not in the 'agent' extra."""
    assert not distributions("matplotlib") & extra_packages("agent")
    assert distributions("prometheus_client") & extra_packages("agent")
    assert "fastapi" in extra_packages("all") and "torch" not in extra_packages("all")


@pytest.mark.parametrize("extra", sorted(extras.PROBES), ids=lambda extra: f"extra-{extra}")
def test_each_probe_belongs_to_its_extra(extra: str) -> None:
    """The modules `loglog` looks for before a subcommand come with that subcommand's extra
    (a probe of another extra would name the wrong one)."""
    for module in extras.PROBES[extra]:
        assert distributions(module.split(".")[0]) & extra_packages(extra), (extra, module)


def test_every_extra_in_pyproject_has_probes_and_back() -> None:
    assert set(extras.PROBES) == set(_optional_dependencies()) - {"all", "dev"}


def _subcommands() -> Iterator[tuple[str, argparse.Namespace]]:
    """Every subcommand of `loglog`, read from argparse's own refusal of an unknown one
    (it lists the choices), with the defaults it sets."""
    parser = cli.build_parser()
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        parser.parse_args(["no-such-command"])
    listed = re.search(r"choose from (.*)\)", err.getvalue())
    assert listed is not None, err.getvalue()
    for name in re.findall(r"'([a-z-]+)'", listed.group(1)):
        yield name, parser.parse_args([name, *_minimal_args(name)])


def test_every_subcommand_that_needs_an_extra_declares_one() -> None:
    """Each subcommand's extra is declared with it (set_defaults(extra=…)) and is one of
    pyproject's; those that need none are the ones listed here."""
    needs_none = {"jobs"}  # jobs is a client (its `serve` subcommand declares fleet)
    declared = {}
    for name, args in _subcommands():
        declared[name] = getattr(args, "extra", None)
    for name, extra in declared.items():
        if name in needs_none:
            assert extra is None, name
        else:
            assert extra, f"loglog {name} declares no extra"
            extra_packages(extra)  # each named extra exists
    assert declared["up"] == "serve,agent"
    assert set(declared) == {
        *needs_none,
        "serve",
        "profile",
        "loadgen",
        "up",
        "agent",
        "receiver",
    } | {
        "dashboards",
        "report",
        "worker",
    }


def _minimal_args(name: str) -> list[str]:
    return {"loadgen": ["--rps", "1"], "dashboards": ["generate"], "jobs": ["ls"]}.get(name, [])


def test_a_subcommand_whose_extra_is_missing_says_which_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`loglog agent` without nvidia-ml-py (a module that is not there stands in for it):
    exit status 2 and one stderr line naming the extra, before anything runs."""
    monkeypatch.setitem(extras.PROBES, "agent", ("prometheus_client", "no_such_module_24"))
    assert cli.main(["agent", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "loglog agent needs the 'agent' extra: in loglog's checkout, pip install '.[agent]'\n"
    )


def test_require_names_every_extra_of_a_list() -> None:
    with pytest.raises(MissingExtra) as caught:
        extras.require("serve,agent", "no_such_module_24", what="loglog up")
    assert str(caught.value) == (
        "loglog up needs the 'serve,agent' extras: in loglog's checkout, pip install '.[serve,agent]'"
    )
    assert caught.value.name == "no_such_module_24" and caught.value.extra == "serve,agent"
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ConfigError)
    extras.require("prometheus", what="x")  # installed here: no error
    with pytest.raises(ValueError, match="unknown extra"):
        extras.require("nope")


def test_no_private_attribute_of_a_library_is_read() -> None:
    """prometheus_client's and OpenTelemetry's private names stay theirs."""
    pattern = re.compile(
        r"\._value\b|\._metrics\b|\._names_to_collectors\b|_RUNTIME_CONTEXT|_SPAN_KEY|_current_context"
    )
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in (*PACKAGES, "bench")
        for path in (ROOT / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, hits
