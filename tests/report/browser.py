"""Open an HTML file in Debian's headless Chromium: console messages, load errors, resources
fetched, each chart's box, and a screenshot (no CDP client needed: a probe script writes what
it saw into the DOM, and ``--dump-dom`` returns it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")
WIDTH = 1000
PROBE = """<script>
window.__errors = [];
addEventListener("error", (e) => __errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e.type)), true);
addEventListener("load", () => {
  const rects = [...document.querySelectorAll("figure.chart svg")].map((s) => {
    const r = s.getBoundingClientRect();
    return {title: s.closest("figure").dataset.chart, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height};
  });
  // Text that leaves the page or its box: wider than the window, or cut by its element.
  const width = document.documentElement.clientWidth;
  const overflow = [...document.body.querySelectorAll("h1, h2, p, li, th, td, figcaption, code")]
    .filter((e) => { const r = e.getBoundingClientRect();
                     return r.left < 0 || r.right > width + 0.5 || e.scrollWidth > e.clientWidth + 1; })
    .map((e) => e.tagName + ": " + e.textContent.slice(0, 80));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({errors: __errors, resources: performance.getEntriesByType("resource").map((r) => r.name),
                                    rects, overflow, pageWidth: document.documentElement.scrollWidth, width,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""
_CONSOLE = re.compile(r":CONSOLE[:(]\S*\]? (.*)")


@dataclass
class Opened:
    console: list[str]  # every console message the page produced
    errors: list[str]  # script errors and failed loads
    resources: list[str]  # everything the page fetched besides itself
    rects: list[dict[str, Any]]  # each chart's <svg> box, CSS pixels from the page's top
    height: int
    overflow: list[str]  # text elements wider than the window or than their own box
    scroll_width: int  # the document's width: over the window's, the page scrolls sideways
    width: int


def _chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is not installed (make debs installs it)"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def open_page(html: Path, work: Path) -> Opened:
    """Load a copy of ``html`` with the probe first in <head>; the original stays untouched."""
    probe = work / f"probe-{html.name}"
    probe.write_text(html.read_text().replace("<head>", "<head>" + PROBE, 1))
    result = _chromium(f"--window-size={WIDTH},800", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run; chromium said:\n{result.stderr[-3000:]}"
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [m.group(1) for m in map(_CONSOLE.search, result.stderr.splitlines()) if m]
    return Opened(
        console,
        seen["errors"],
        seen["resources"],
        seen["rects"],
        int(seen["height"]),
        seen["overflow"],
        int(seen["pageWidth"]),
        int(seen["width"]),
    )


def screenshot(html: Path, out: Path, height: int) -> Path:
    """A PNG of the whole page at WIDTH × height CSS pixels."""
    result = _chromium(f"--window-size={WIDTH},{height}", f"--screenshot={out}", html.as_uri())
    assert out.exists(), f"no screenshot; chromium said:\n{result.stderr[-3000:]}"
    return out
