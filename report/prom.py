"""A bounded Prometheus HTTP API client: instant and range queries, every answer checked.

Bounded: each query ends within ``timeout`` seconds in total (not per read: see
:mod:`report.fetch`), its answer is at most ``max_bytes`` long and holds at most
``max_series`` series — a Prometheus (or an impostor) that trickles, floods or fans out
costs one clear error, never a hang or gigabytes. Checked: an answer that is not
Prometheus' shape (deeply nested, numbers where strings belong, huge integers, times
outside the calendar) is a :class:`~report.errors.PrometheusError` naming the server.

Values keep Prometheus' meaning: NaN (no value) is dropped, ±Inf is kept — a figure
that is infinite is said as such by :mod:`report.facts`, never formatted as a number.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from loglog.redact import redact_url

from . import fetch
from .errors import AnswerTooLarge, PrometheusError, QueryError

#: One range series: its labels and (unix time, value) points.
Series = tuple[dict[str, str], list[tuple[float, float]]]

TIMEOUT = 30.0
MAX_BYTES = 16 * 1024 * 1024
MAX_SERIES = 1000
#: Times outside [0, 10**11] s (year 5138) are not Prometheus timestamps.
_LATEST = 1e11


class _Malformed(ValueError):
    """The answer is JSON but not a Prometheus query result."""


class Prometheus:
    """Queries ``url`` (``http://host:9090``) within the limits given."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = TIMEOUT,
        max_bytes: int = MAX_BYTES,
        max_series: int = MAX_SERIES,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_series = max_series

    def instant(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """``expr`` evaluated at ``at``: one (labels, value) per series; NaN values dropped."""
        data = self._get("query", {"query": expr, "time": f"{at:.3f}"}, expr)
        try:
            kind = data.get("resultType")
            result = data.get("result")
            if kind == "scalar":
                _time, value = _point(result)
                return [] if math.isnan(value) else [({}, value)]
            if kind != "vector" or not isinstance(result, list):
                raise _Malformed(f"resultType {kind!r} with a {type(result).__name__} result")
            self._count(result, expr)
            out = []
            for item in result:
                _time, value = _point(_field(item, "value"))
                if not math.isnan(value):
                    out.append((_labels(item), value))
            return out
        except _Malformed as exc:
            raise self._shape_error(expr, exc) from None

    def scalar(self, expr: str, at: float) -> float | None:
        """The single value of ``expr`` at ``at``, ``None`` when empty; sums several series."""
        result = self.instant(expr, at)
        return math.fsum(v for _, v in result) if result else None

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """``expr`` over [start, end] every ``step`` seconds; NaN points dropped (a gap)."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("query_range", params, expr)
        out: list[Series] = []
        try:
            result = data.get("result")
            if data.get("resultType") != "matrix" or not isinstance(result, list):
                raise _Malformed(f"resultType {data.get('resultType')!r} for a range query")
            self._count(result, expr)
            for item in result:
                values = _field(item, "values")
                if not isinstance(values, list):
                    raise _Malformed("values is not a list")
                points = [p for p in map(_point, values) if not math.isnan(p[1])]
                if points:
                    out.append((_labels(item), points))
        except _Malformed as exc:
            raise self._shape_error(expr, exc) from None
        return out

    def _count(self, result: list[Any], expr: str) -> None:
        if len(result) > self.max_series:
            raise AnswerTooLarge(
                f"Prometheus answered {len(result)} series for {expr!r}, over the cap of "
                f"{self.max_series} series per query: pass --max-series N to allow more"
            )

    def _shape_error(self, expr: str, exc: Exception) -> PrometheusError:
        """A result that is JSON but not Prometheus' shape (a proxy, an impostor, a
        truncated answer): a PrometheusError naming the server."""
        return PrometheusError(
            f"{redact_url(self.url)} did not answer like Prometheus' HTTP API: the result "
            f"for {expr!r} is malformed ({exc}). Is --prometheus the Prometheus server's "
            "URL (e.g. http://127.0.0.1:9090)?"
        )

    def _get(self, endpoint: str, params: dict[str, str], expr: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        where = redact_url(self.url)
        try:
            status, raw = fetch.get(url, timeout=self.timeout, max_bytes=self.max_bytes)
        except fetch.TooLarge:
            raise AnswerTooLarge(
                f"Prometheus' answer to {expr!r} is over the cap of {_mib(self.max_bytes)} "
                "per answer: pass --max-answer-mb N to allow more, or a shorter --range"
            ) from None
        except fetch.TimedOut:
            raise PrometheusError(
                f"cannot query Prometheus at {where}: no whole answer within {self.timeout:g} s "
                f"(timed out) for {expr!r}. Is it overloaded? Pass --timeout S to wait longer."
            ) from None
        except (OSError, ValueError) as exc:
            raise PrometheusError(
                f"cannot query Prometheus at {where}: {exc}. Start it (`loglog up`) or pass "
                "--prometheus URL."
            ) from exc
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser
            detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            raise PrometheusError(
                f"{where} did not answer like Prometheus' HTTP API (HTTP {status}, not JSON: "
                f"{detail}): is --prometheus the Prometheus server's URL (e.g. "
                "http://127.0.0.1:9090)?"
            ) from None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusError(
                f"{where} did not answer like Prometheus' HTTP API (HTTP {status}, no status "
                "field): is --prometheus the Prometheus server's URL (e.g. http://127.0.0.1:9090)?"
            )
        if body["status"] != "success":
            error = body.get("error", body)
            text = error if isinstance(error, str) else "an error without a message"
            raise QueryError(f"Prometheus rejected {expr!r}: {text[:500]}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{where} answered without data for {expr!r}")
        return data


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def _field(item: Any, name: str) -> Any:
    if not isinstance(item, dict) or name not in item:
        raise _Malformed(f"a series without {name!r}")
    return item[name]


def _labels(item: dict[str, Any]) -> dict[str, str]:
    metric = _field(item, "metric")
    if not isinstance(metric, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
    ):
        raise _Malformed("labels that are not strings")
    return metric


def _point(pair: Any) -> tuple[float, float]:
    """``[unix time, "value"]`` as Prometheus writes it: a finite time within the calendar
    and a value string (``"NaN"`` and ``"±Inf"`` included)."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise _Malformed(f"a point that is not [time, value]: {str(pair)[:60]}")
    t, v = pair
    if isinstance(t, bool) or not isinstance(t, int | float) or isinstance(v, bool):
        raise _Malformed(f"a point with a time that is not a number: {str(pair)[:60]}")
    if (isinstance(t, int) and abs(t) > _LATEST) or not 0 <= float(t) <= _LATEST:
        raise _Malformed(f"a time outside the calendar: {str(t)[:40]}")
    if not isinstance(v, str) or len(v) > 64:
        raise _Malformed(f"a value that is not a number string: {str(v)[:60]}")
    try:
        value = float(v)
    except ValueError:
        raise _Malformed(f"a value that is not a number: {v!r}") from None
    return float(t), value
