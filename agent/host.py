"""Host and watched-process readings from /proc (the path is a parameter, for tests)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclasses.dataclass(frozen=True)
class ProcessReading:
    pid: int
    name: str
    cpu_seconds: float
    rss_bytes: float


class HostReader:
    """Reads /proc. ``ticks`` is USER_HZ (clock ticks per second, 100 on Linux)."""

    def __init__(self, proc: str | os.PathLike[str] = "/proc", ticks: int | None = None) -> None:
        self.proc = Path(proc)
        self.ticks = ticks or os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")

    def cpu_seconds(self) -> dict[str, float]:
        """Seconds of CPU time of all cores together, by mode (first line of /proc/stat)."""
        first = (self.proc / "stat").read_text().splitlines()[0].split()
        return {
            mode: int(value) / self.ticks for mode, value in zip(_MODES, first[1:], strict=False)
        }

    def cpus(self) -> int:
        lines = (self.proc / "stat").read_text().splitlines()
        return sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())

    def load1(self) -> float:
        return float((self.proc / "loadavg").read_text().split()[0])

    def memory(self) -> tuple[float, float]:
        """(total, available) bytes from /proc/meminfo."""
        fields = {}
        for line in (self.proc / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            fields[key] = float(rest.split()[0]) * 1024
        return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0.0))

    def process(self, pid: int) -> ProcessReading | None:
        """CPU seconds and RSS of ``pid``, or None when it is gone."""
        try:
            stat = (self.proc / str(pid) / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        # The name is in parentheses and may contain spaces; fields follow the last ')'.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        after = stat[stat.rindex(")") + 2 :].split()
        utime, stime, rss_pages = int(after[11]), int(after[12]), int(after[21])
        return ProcessReading(pid, name, (utime + stime) / self.ticks, float(rss_pages * self.page))

    def find(self, pattern: str) -> list[int]:
        """PIDs whose command line contains ``pattern`` (not this process)."""
        found = []
        for entry in self.proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if pattern in cmdline:
                found.append(int(entry.name))
        return sorted(found)
