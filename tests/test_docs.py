"""The README and docs/ hold together: every relative link and anchor resolves, the README
stays short, and every test the guarantees page names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text outside fenced code blocks (a `[x](y)` in a shell example is no link)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation but `-` and `_`
    removed, spaces turned into hyphens (so ``a — b`` becomes ``a--b``)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a Markdown page, repeated headings numbered as GitHub does."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in _HEADING.findall(_prose(page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """The relative link targets of a page (web and mail links left out)."""
    text = _CODE.sub("code", _prose(page.read_text()))
    return [
        target
        for target in _LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)
    ]


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file or ``#anchor`` does not exist."""
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


def test_the_readme_is_at_most_250_lines():
    """The README says what loglog is and links to docs/; the rest lives in docs/."""
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move text to docs/"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    """A moved file or a renamed heading breaks no link of the README or docs/."""
    assert broken_links(page) == []


def test_the_link_check_sees_a_missing_file_and_a_missing_anchor(tmp_path):
    """The check itself: a link to a missing file, or to a heading that is not there,
    is reported; a link to an existing heading (punctuation and code in it) is not."""
    (tmp_path / "a.md").write_text(
        "# Top\n\n## `loglog up` — the stack (`x/`)\n\n```sh\n[not](a link)\n```\n"
        "[ok](#loglog-up--the-stack-x) [ok2](b.md#b) [web](https://example.com/#x)\n"
        "[gone](missing.md) [bad](b.md#nope) [self](#nope)\n"
    )
    (tmp_path / "b.md").write_text("# B\n")
    broken = broken_links(tmp_path / "a.md")
    assert [b.split(":")[0] for b in broken] == ["missing.md", "b.md#nope", "#nope"]


def test_repeated_headings_are_numbered_like_github(tmp_path):
    """Two headings with one text get ``x`` and ``x-1``."""
    page = tmp_path / "p.md"
    page.write_text("## Run\n\n## Run\n")
    assert anchors(page) == {"run", "run-1"}


def test_every_test_the_guarantees_page_names_exists():
    """docs/guarantees.md maps each promise to tests by ``file::name``; each must be a
    test function in that file, so a renamed or removed test is seen here."""
    refs = _TEST_REF.findall((DOCS / "guarantees.md").read_text())
    assert len(refs) > 50
    missing = []
    for file, name in refs:
        path = ROOT / file
        source = path.read_text() if path.exists() else ""
        if not re.search(rf"^(async )?def {name}\(", source, re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert missing == []
