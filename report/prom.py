"""A minimal Prometheus HTTP API client: instant and range queries, errors translated."""

from __future__ import annotations

import contextlib
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from loglog.redact import redact_url

from .errors import PrometheusError, QueryError

#: One range series: its labels and (unix time, value) points.
Series = tuple[dict[str, str], list[tuple[float, float]]]


class Prometheus:
    """Queries ``url`` (``http://host:9090``); every answer is parsed and checked here."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def instant(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """``expr`` evaluated at ``at``: one (labels, value) per series; NaN values dropped."""
        data = self._get("query", {"query": expr, "time": f"{at:.3f}"}, expr)
        with self._shape(expr):
            if data.get("resultType") == "scalar":
                value = float(data["result"][1])
                return [] if math.isnan(value) else [({}, value)]
            out = []
            for item in data.get("result", []):
                value = float(item["value"][1])
                if not math.isnan(value):
                    out.append((dict(item["metric"]), value))
            return out

    def scalar(self, expr: str, at: float) -> float | None:
        """The single value of ``expr`` at ``at``, ``None`` when empty; sums several series."""
        result = self.instant(expr, at)
        return sum(v for _, v in result) if result else None

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """``expr`` over [start, end] every ``step`` seconds."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("query_range", params, expr)
        out: list[Series] = []
        with self._shape(expr):
            for item in data.get("result", []):
                points = [(float(t), float(v)) for t, v in item["values"]]
                points = [(t, v) for t, v in points if not math.isnan(v)]
                if points:
                    out.append((dict(item["metric"]), points))
        return out

    @contextlib.contextmanager
    def _shape(self, expr: str) -> Iterator[None]:
        """A result that is JSON but not Prometheus' shape (a proxy, an impostor, a
        truncated answer) is a PrometheusError naming the server, not a KeyError."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusError(
                f"{redact_url(self.url)} did not answer like Prometheus' HTTP API: the result "
                f"for {expr!r} is malformed ({type(exc).__name__}: {exc}). Is --prometheus "
                "the Prometheus server's URL (e.g. http://127.0.0.1:9090)?"
            ) from exc

    def _get(self, endpoint: str, params: dict[str, str], expr: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        where = redact_url(self.url)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusError(
                    f"{where} answered HTTP {exc.code} and no Prometheus JSON: is --prometheus "
                    "the Prometheus server's URL (e.g. http://127.0.0.1:9090)?"
                ) from exc
        except ValueError as exc:  # an answer, but not JSON: a web page, a proxy's error
            raise PrometheusError(
                f"{where} did not answer like Prometheus' HTTP API ({exc}): is --prometheus "
                "the Prometheus server's URL (e.g. http://127.0.0.1:9090)?"
            ) from exc
        except OSError as exc:
            raise PrometheusError(
                f"cannot query Prometheus at {where}: {exc}. Start it (`loglog up`) or pass "
                "--prometheus URL."
            ) from exc
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusError(f"{where} did not answer like Prometheus' HTTP API (no status)")
        if body["status"] != "success":
            raise QueryError(f"Prometheus rejected {expr!r}: {body.get('error', body)}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{where} answered without data for {expr!r}")
        return data
