"""What `loglog up` tells a newcomer: a `loglog` command that works from their shell."""

from __future__ import annotations

import sys
from pathlib import Path

from stack.up import Options, _next_steps


def test_next_steps_say_how_to_reach_loglog_when_it_is_not_on_path(monkeypatch):
    """Without the venv activated, the printed command is the venv's loglog, plus how to
    activate it (before: `loglog profile` was 'command not found' after `make up`)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    text = _next_steps(Options(state_dir=Path(".")), "/classic/alerts")
    loglog = Path(sys.executable).parent / "loglog"
    assert f"{loglog} profile --url http://127.0.0.1:8000 --agent http://127.0.0.1:9400\n" in text
    assert f"{loglog} report --prometheus http://127.0.0.1:9090" in text
    if (Path(sys.executable).parent / "activate").exists():
        assert "activate" in text and text.count(". ") >= 1
    assert "http://127.0.0.1:9090/classic/alerts" in text


def test_next_steps_use_the_plain_command_when_it_is_on_path(monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    text = _next_steps(Options(state_dir=Path(".")))
    assert "  loglog profile --url" in text and "activate" not in text
