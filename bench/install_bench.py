"""Benchmark: what each install costs — venv size (MB) and install time (s), per extra.

Not a test. Builds loglog's wheel once, then for the logger alone (``pip install loglog``)
and for each extra, creates a fresh virtual environment (``python3 -m venv``) and times
``pip install 'loglog[EXTRA]'`` from that wheel against the package index pip is set up
with here; the size is the whole venv on disk (``du``), the empty venv's own included
(~20 MB: pip and setuptools). Installs run one after another with pip's cache as it is,
so a package downloaded for one extra is not downloaded again for the next: times are
what a developer re-installing sees, sizes are exact. Before issue 24, the one install
there was (everything) came to 515 MB and 72 s.

Usage: ``python -m bench.install_bench [--extras bare,serve,…]``; writes
``bench/results/install.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT = "bare,prometheus,otlp,agent,dashboards,report,serve,fleet,all"


def build_wheel(into: Path) -> Path:
    """loglog's wheel, built once (the C extension included where a compiler is)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into), str(ROOT)],
        check=True,
    )
    (wheel,) = into.glob("loglog-*.whl")
    return wheel


def venv_size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def install(wheel: Path, extra: str, where: Path) -> dict[str, float | int]:
    """A fresh venv with ``wheel[extra]`` installed: seconds, MB, packages."""
    venv = where / extra
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    empty = venv_size_mb(venv)
    target = str(wheel) if extra == "bare" else f"{wheel}[{extra}]"
    started = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", target], check=True)
    seconds = time.perf_counter() - started
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "seconds": round(seconds, 1),
        "venv_mb": round(venv_size_mb(venv), 1),
        "added_mb": round(venv_size_mb(venv) - empty, 1),
        "packages": len(json.loads(listed.stdout)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default=DEFAULT, help=f"comma-separated (default: {DEFAULT})")
    args = parser.parse_args()
    results: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory(prefix="loglog-install-") as tmp:
        wheel = build_wheel(Path(tmp) / "wheel")
        for extra in args.extras.split(","):
            results[extra] = install(wheel, extra, Path(tmp))
            row = results[extra]
            print(
                f"{extra:<12} {row['venv_mb']:>8.1f} MB {row['added_mb']:>8.1f} MB added "
                f"{row['seconds']:>7.1f} s {row['packages']:>4} packages",
                flush=True,
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "installs": results}
    (RESULTS / "install.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS / 'install.json'}")


if __name__ == "__main__":
    main()
