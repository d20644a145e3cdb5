"""Every alert's summary and description read as sentences once rendered with the labels
and value of its own firing case — what the page shows an on-call engineer. (Before, a
burn-rate summary read "take longer than 1s error budget is burning fast: the month's
budget goes in hours on inference".)"""

from __future__ import annotations

import re

import pytest

from alerts.catalog import Alert
from alerts.config import Config
from alerts.render import all_alerts, render

_TEMPLATE = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")
ALERTS = all_alerts(Config())


def _example(alert: Alert) -> tuple[dict[str, str], float]:
    """The labels (the alert's own and its first firing case's) and value it fires with."""
    case = next(c for c in alert.cases if c.fires)
    return {**alert.all_labels(), **case.fires[0]}, case.value


def _reads_as_a_sentence(text: str) -> list[str]:
    problems = []
    if not re.match(r"[A-Z0-9]", text):
        problems.append("does not start with a capital letter or a number")
    if "{{" in text or "}}" in text:
        problems.append("a template is left")
    if re.search(r"\s{2,}|\s[.,;:)]|\(\s|\(\)|^\s|\s$", text):
        problems.append("an empty slot or stray space")
    if text.count("(") != text.count(")"):
        problems.append("unbalanced parentheses")
    if re.search(r"\b(\w+) \1\b", text, re.I):
        problems.append("a word twice")
    if re.search(r"\d[kMGTmunp] s\b", text):
        problems.append("an SI-prefixed number of seconds (18k s)")
    return problems


@pytest.mark.parametrize("alert", ALERTS, ids=[a.name for a in ALERTS])
def test_summary_and_description_render_as_sentences(alert: Alert):
    """With its firing case's labels: every label the templates use is there, the summary is
    a headline (capital, no full stop), the description a sentence (capital or a number,
    a full stop), neither has an empty slot, a doubled word or a leftover template."""
    labels, value = _example(alert)
    for template in (alert.summary, alert.description):
        missing = [n for n in _TEMPLATE.findall(template) if not labels.get(n)]
        assert not missing, f"{alert.name}: no example value for {missing}"
    summary = render(alert.summary, labels, value)
    description = render(alert.description, labels, value)
    assert _reads_as_a_sentence(summary) == [], (alert.name, summary)
    assert not summary.endswith("."), summary
    assert _reads_as_a_sentence(description) == [], (alert.name, description)
    assert description.endswith("."), description


def test_the_burn_rate_summary_of_the_issue_reads_as_a_sentence():
    """The page for a fast latency burn, word for word."""
    alert = next(a for a in ALERTS if a.name == "InferenceLatencyBudgetBurn")
    labels, value = _example(alert)
    assert render(alert.summary, labels, value) == (
        "Requests to inference take longer than 1 s at a rate that spends the 30-day error "
        "budget within days"
    )
    assert render(alert.description, labels, value) == (
        "50% of requests take longer than 1 s over the long burn window; the budget allows "
        "1.00% (a 99% objective)."
    )


def test_the_check_sees_a_garbled_sentence():
    """The check can fail: the old burn-rate summary and a template with an empty slot."""
    old = (
        "take longer than 1s error budget is burning fast: the month's budget goes in hours "
        "on inference"
    )
    assert "does not start with a capital letter or a number" in _reads_as_a_sentence(old)
    assert "an empty slot or stray space" in _reads_as_a_sentence("Stream  on inf:8000 lags")
