"""Every metric name the stack may query: declared in a ``metrics.py``, nowhere else.

Rules and dashboards may only name these (or recording rules defined in
:mod:`alerts.rules`); ``check_expression`` is what the tests use to enforce it, so a metric
rename breaks the build instead of silently turning a panel into "No data".
"""

from __future__ import annotations

import re
from functools import cache

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_DURATIONS = re.compile(r"\[[^\[\]]*\]")
_NUMBER_SUFFIX = re.compile(r"\b\d+(\.\d+)?(e[+-]?\d+)?[smhdwy]?\b")
#: PromQL keywords, functions and aggregations that look like identifiers.
PROMQL_WORDS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "abs",
        "absent",
        "absent_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_quantile",
        "histogram_count",
        "histogram_sum",
        "histogram_fraction",
        "histogram_avg",
        "histogram_stddev",
        "histogram_stdvar",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "ln",
        "log2",
        "log10",
        "minute",
        "month",
        "predict_linear",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sqrt",
        "time",
        "timestamp",
        "vector",
        "year",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "quantile_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "le",
        "atan2",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "by",
        "without",
    ]
)
#: Grafana template variables and functions allowed in dashboard queries.
GRAFANA_WORDS = frozenset({"__rate_interval", "__interval", "__range", "__range_s", "__name__"})


@cache
def declared() -> frozenset[str]:
    """Every exported series name, histogram suffixes included."""
    from agent.metrics import METRICS as AGENT
    from fleet.metrics import METRICS as FLEET
    from inference.metrics import LOADGEN_METRICS
    from inference.metrics import METRICS as INFERENCE
    from loglog.metrics import METRICS as LOGGER
    from stack.metrics import METRICS as STACK

    names: set[str] = {"up", "scrape_duration_seconds", "ALERTS", "ALERTS_FOR_STATE"}
    tables = [
        (name, spec[0])
        for table in (AGENT, INFERENCE, LOADGEN_METRICS, FLEET, STACK)
        for name, spec in table.items()
    ]
    tables += [(name, kind) for name, (kind, _help) in LOGGER.items()]
    for name, kind in tables:
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_count", f"{name}_sum"})
    return frozenset(names)


def identifiers(expression: str) -> set[str]:
    """The metric names an expression refers to (labels, functions, variables removed)."""
    text = _STRINGS.sub(" ", expression)
    text = re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?", " ", text)  # Grafana variables
    previous = None
    while previous != text:  # nested braces in label matchers are not allowed; loop anyway
        previous = text
        text = _BRACES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _DURATIONS.sub(" ", text)
    text = _NUMBER_SUFFIX.sub(" ", text)
    return {
        word
        for word in _IDENT.findall(text)
        if word.lower() not in PROMQL_WORDS and word not in GRAFANA_WORDS
    }


def check_expression(
    expression: str, recorded: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Names in ``expression`` that are neither declared metrics nor recording rules."""
    known = declared() | set(recorded)
    return sorted(name for name in identifiers(expression) if name not in known)
