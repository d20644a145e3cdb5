"""The file sink: rotation by size and following the path after logrotate."""

from __future__ import annotations

import os
import time

from loglog.sinks.file import FileSink
from loglog.types import Record


def _records(n: int, start: int = 0) -> list[Record]:
    return [
        Record(i, time.time_ns(), 20, "f", "x" * 100, {"i": i}) for i in range(start, start + n)
    ]


def test_rotates_past_max_bytes_and_keeps_the_configured_backups(tmp_path):
    """Files rotate to .1, .2 … and no more than `backups` old files are kept."""
    path = tmp_path / "app.log"
    sink = FileSink(path, max_bytes=2000, backups=2)
    for n in range(10):
        sink.write(_records(10, n * 10))
    sink.close(1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["app.log", "app.log.1", "app.log.2"]
    assert all(p.stat().st_size < 4000 for p in tmp_path.iterdir())


def test_reopens_the_path_after_logrotate_moved_the_file(tmp_path, monkeypatch):
    """When the file is renamed away, the sink notices and writes to a new file at the path."""
    import loglog.sinks.file as file_module

    monkeypatch.setattr(file_module, "_RECHECK", 0.0)
    path = tmp_path / "app.log"
    sink = FileSink(path)
    sink.write(_records(1))
    os.rename(path, tmp_path / "app.log.old")
    sink.write(_records(1, 1))
    sink.close(1)
    assert path.exists() and '"i":1' in path.read_text()
    assert '"i":0' in (tmp_path / "app.log.old").read_text()
