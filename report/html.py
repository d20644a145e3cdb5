"""The report as one self-contained HTML file: inline CSS, inline SVG charts, no script, no link."""

from __future__ import annotations

from html import escape

from . import charts
from .model import Chart, Figure, Report, Section
from .units import duration, moment

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; max-width: 780px; margin: 24px auto;
       padding: 0 16px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 6px; }
.meta { color: #666; font-size: 12px; margin: 0 0 16px; }
.sentence { font-size: 15px; margin: 4px 0 10px; }
.summary li { margin: 4px 0; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eee; }
td.figure { font-variant-numeric: tabular-nums; font-weight: 600; }
figure.chart { margin: 8px 0 16px; }
figure.chart svg { width: 720px; height: auto; display: block; }
figcaption { color: #666; font-size: 12px; }
.no-data { color: #8a6d3b; background: #fcf8e3; padding: 6px 10px; border-radius: 4px; }
"""


def _figure_row(f: Figure) -> str:
    value = "" if f.value is None else repr(f.value)
    return (
        f'<tr><th>{escape(f.label)}</th><td class="figure" data-query="{escape(f.query)}" '
        f'data-value="{value}" data-unit="{escape(f.unit)}" data-at="{f.at!r}">'
        f"{escape(f.text)}</td></tr>"
    )


def _chart(c: Chart, report: Report) -> str:
    if not c.lines:
        return f'<p class="no-data" data-chart="{escape(c.title)}">{escape(c.empty)}</p>'
    figure = charts.line_chart(c, report.start, report.end)
    return (
        f'<figure class="chart" data-chart="{escape(c.title)}">{charts.svg(figure)}'
        f"<figcaption>{escape(c.description)} {escape(c.note)}</figcaption></figure>"
    )


def _section(s: Section, report: Report) -> str:
    parts = [
        f'<section id="{s.key}" data-has-data="{str(s.has_data).lower()}" '
        f'data-state="{s.state.name.lower()}">',
        f"<h2>{escape(s.title)}</h2>",
        f'<p class="sentence">{escape(s.sentence)}</p>',
    ]
    if s.figures:
        parts.append('<table class="figures">' + "".join(map(_figure_row, s.figures)) + "</table>")
    if s.episodes:
        timeline = charts.timeline(s.episodes, report.start, report.end)
        parts.append(
            f'<figure class="chart" data-chart="Alerts firing">{charts.svg(timeline)}'
            "<figcaption>Every firing alert over the range, from Prometheus' ALERTS series; "
            "red bars are pages (critical), orange are tickets (warning).</figcaption></figure>"
        )
        rows = "".join(
            f"<tr><td>{escape(e.alertname)}</td><td>{escape(e.severity)}</td>"
            f"<td>{moment(e.start)}</td><td>{duration(e.seconds)}</td></tr>"
            for e in s.episodes
        )
        parts.append(
            '<table class="episodes"><tr><th>Alert</th><th>Severity</th><th>Started</th>'
            f"<th>Fired for</th></tr>{rows}</table>"
        )
    parts += [_chart(c, report) for c in s.charts]
    parts.append("</section>")
    return "\n".join(parts)


def render(report: Report) -> str:
    """The whole document."""
    period = f"{moment(report.start)} to {moment(report.end)} ({duration(report.range_seconds)})"
    summary = "".join(
        f"<li><b>{escape(s.title)}.</b> {escape(s.sentence)}</li>" for s in report.sections
    )
    body = "\n".join(_section(s, report) for s in report.sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>loglog service report · {escape(period)}</title>
<style>{CSS}</style></head>
<body>
<header><h1>Service report</h1>
<p class="meta">{escape(period)} · figures from {escape(report.prometheus)} · a point every
{duration(report.step)} · made by <code>loglog report</code></p></header>
<section class="summary"><h2>Summary</h2><ul>{summary}</ul></section>
{body}
</body></html>
"""
