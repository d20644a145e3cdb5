"""Strict JSON request bodies, for both HTTP servers (the inference server, the jobs API).

Python's ``json`` — and so FastAPI — accepts what JSON does not: ``NaN``, ``Infinity`` and
``-Infinity`` (RFC 8259 §6 has no such numbers), ``1e400`` (read as ``inf``), and
``"\\ud800"`` (a lone surrogate: no file name, log line or UTF-8 answer can hold it). Each
reached a handler and came back as a 500 — FastAPI echoing ``NaN`` in its error answer,
``realpath`` raising ``UnicodeEncodeError``. :func:`loads` refuses them with a 400 that
names the problem and where it is; :func:`strict_json_route` makes every route of an app
read its JSON body through it, within a size cap and a deadline (413, 408)::

    app = FastAPI()
    app.router.route_class = strict_json_route(
        lambda status, problem: JSONResponse({"error": problem}, status_code=status)
    )  # before the routes are declared

Only the body a route declares is read this way; a route that reads ``request.stream()``
itself (``/v1/infer``) keeps its own limits.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

#: A JSON document a client sends these servers is a few fields; 64 KiB is far above any.
MAX_JSON_BYTES = 64 * 1024
#: Seconds a JSON body may take to arrive in full (a trickled body holds a connection).
JSON_BODY_TIMEOUT_S = 10.0
#: Integers beyond 64 bits are refused: no field takes them, and past 4,300 digits
#: ``int()`` itself raises (CPython's limit on int/str conversion).
_INT_LIMIT = 2**63 - 1

Render = Callable[[int, str], Response]


class InvalidBody(HTTPException):
    """A request body refused before any handler saw it; ``status`` 400, 408 or 413.

    An HTTPException so that FastAPI, which turns any other error raised while it reads a
    body into a generic 400, lets it through to :func:`strict_json_route`'s handler."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(status_code=status, detail=problem)
        self.problem = problem


def loads(data: bytes | str) -> Any:
    """``data`` parsed as strict JSON (UTF-8, finite numbers that fit a double or 64-bit
    integer, valid Unicode strings); :class:`InvalidBody` (400) saying what is wrong.

    >>> loads(b'{"priority": 3}')
    {'priority': 3}
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidBody(
                400, f"the body is not UTF-8 (byte {exc.start}): send JSON encoded as UTF-8"
            ) from None
    else:
        text = data
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InvalidBody(
            400, f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise InvalidBody(400, "the body is not JSON we accept: it nests too deeply") from None
    _check_strings(value)
    return value


def _constant(name: str) -> Any:
    raise InvalidBody(
        400, f"the body has {name}, which is not a JSON number: send a finite number or null"
    )


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidBody(
            400, f"the number {text[:40]} is out of range: JSON numbers here must fit a double "
            "(about ±1.8e308)",
        )  # fmt: skip
    return value


def _int(text: str) -> int:
    # Length first: int() of a 10,000-digit string costs time and raises past 4,300.
    if len(text.lstrip("-")) > 19 or abs(int(text)) > _INT_LIMIT:
        raise InvalidBody(
            400, f"the integer {text[:40]}{'…' if len(text) > 40 else ''} is out of range: "
            "integers here must fit 64 bits",
        )  # fmt: skip
    return int(text)


def _check_strings(value: Any) -> None:
    """Refuse a lone surrogate in any key or string, naming where it is."""
    stack: list[tuple[str, Any]] = [("body", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            _check_text(where, item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                _check_text(f"{where} (a key)", key)
                stack.append((f"{where}.{key}", inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", inner) for index, inner in enumerate(item))


def _check_text(where: str, text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        # ``where`` may hold the surrogate itself (a key): shown escaped, never raw.
        shown = where.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise InvalidBody(
            400, f"{shown[:200]}: the string has a lone surrogate (\\u{bad:04x}), which is not "
            "Unicode text: send valid UTF-8",
        ) from None  # fmt: skip


def strict_json_route(
    render: Render, *, max_bytes: int = MAX_JSON_BYTES, timeout: float = JSON_BODY_TIMEOUT_S
) -> type[APIRoute]:
    """An ``APIRoute`` class whose routes read their JSON body with :func:`loads`, at most
    ``max_bytes`` (413) within ``timeout`` seconds (408); refusals are answered by
    ``render(status, problem)``, so each app keeps the shape of its own errors."""

    class StrictRequest(Request):
        _strict_body: bytes | None = None

        async def body(self) -> bytes:
            if self._strict_body is None:
                try:
                    async with asyncio.timeout(timeout):
                        self._strict_body = await self._read()
                except TimeoutError:
                    raise InvalidBody(
                        408, f"the body did not arrive within {timeout:g}s: send it at once"
                    ) from None
            return self._strict_body

        async def _read(self) -> bytes:
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise InvalidBody(413, _too_large(f"{int(declared)} bytes", max_bytes))
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidBody(413, _too_large(f"over {max_bytes} bytes", max_bytes))
                chunks.append(chunk)
            return b"".join(chunks)

        async def json(self) -> Any:
            return loads(await self.body())

    class StrictJSONRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def strict(request: Request) -> Response:
                try:
                    return await handler(StrictRequest(request.scope, request.receive))
                except InvalidBody as exc:
                    response = render(exc.status_code, exc.problem)
                    if exc.status_code in (408, 413):
                        # The body was not read to its end: the connection cannot carry
                        # another request, and keeping it would leave it to keep-alive.
                        response.headers["connection"] = "close"
                    return response

            return strict

    return StrictJSONRoute


def _too_large(size: str, limit: int) -> str:
    return f"the body is {size}; a JSON request may be at most {limit} bytes"


__all__ = ["MAX_JSON_BYTES", "InvalidBody", "loads", "strict_json_route"]
