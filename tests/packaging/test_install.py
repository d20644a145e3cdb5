"""`pip install .` into a fresh venv is the logger alone: no third-party package, a
working `import loglog`, and a `loglog` command that names the extra it needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.install_bench import build_wheel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: What a fresh venv holds before anything is installed (Python 3.11: both).
VENV_OWN = {"pip", "setuptools"}


def test_pip_install_dot_is_the_logger_alone(tmp_path: Path) -> None:
    """One build, one fresh venv, the package index pip uses here."""
    wheel = build_wheel(tmp_path / "wheel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip, python = venv / "bin" / "pip", venv / "bin" / "python"
    subprocess.run([str(pip), "install", "-q", str(wheel)], check=True, timeout=300)

    listed = subprocess.run(
        [str(pip), "list", "--format=json"], capture_output=True, text=True, check=True
    )
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert names - VENV_OWN == {"loglog"}, names

    logged = subprocess.run(
        [
            str(python),
            "-c",
            "import loglog; loglog.configure(console='text');"
            "loglog.get_logger('fresh').info('installed alone', speedups=loglog.SPEEDUPS);"
            "loglog.shutdown()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: the installed package is imported
    )
    assert logged.returncode == 0, logged.stderr
    assert "installed alone" in logged.stderr

    up = subprocess.run(
        [str(venv / "bin" / "loglog"), "up"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (up.returncode, up.stderr) == (
        2,
        "loglog up needs the 'serve,agent' extras: in loglog's checkout, pip install '.[serve,agent]'\n",
    )
