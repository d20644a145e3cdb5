"""Rendering: user values to JSON-safe values, records to JSON lines and to human text.

Values are rendered once, on the worker thread, so that sinks never call user code (a
``__repr__`` that logs, or raises, runs exactly once and in one place). The JSON encoder is
hand-rolled for the shapes records have; it is about three times faster than
``json.dumps`` on a record of a message and three fields, which is what lets one core
deliver well over 200k records/s to a file.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from .types import JSONValue, Record, level_name

_MAX_DEPTH = 4
_MAX_ITEMS = 100
_MAX_TEXT = 64 * 1024
MAX_TEXT = _MAX_TEXT  # longest string value kept whole (the worker's fast path checks it)
#: Ints with more digits than CPython converts to text by default (4,300, a limit a
#: program may lower or lift) are written as ``<int: N digits>``: a value costs only its
#: own text, and converting a huge one would take quadratic time on the worker.
MAX_INT = 10**4300
MIN_INT = -MAX_INT  # a constant: negating a 4,300-digit int allocates one each time
#: Keys every JSON line owns; a user field with one of these names is written as "_<name>".
RESERVED = frozenset(
    {"ts", "level", "logger", "msg", "trace_id", "span_id", "thread", "exc", "replayed"}
)


def render_value(value: object, depth: int = 0, *, safe: bool = False) -> JSONValue:
    """Turn any value into something JSON can encode, without ever raising.

    ``safe=True`` never calls user code (used for loglog's own records, which may be
    emitted from inside a user ``__repr__``: this is what cuts that recursion).

    >>> render_value({"a": (1, 2.5, None)})
    {'a': [1, 2.5, None]}
    """
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
    if kind is int:
        number_: int = value  # type: ignore[assignment]
        return number_ if MIN_INT < number_ < MAX_INT else int_text(number_)
    if kind is bool or value is None:
        return value
    if kind is float:
        number: float = value  # type: ignore[assignment]
        return number if math.isfinite(number) else str(number)  # "nan", "inf", "-inf"
    if depth < _MAX_DEPTH:
        if kind is list or kind is tuple:
            items: list[object] = list(value)[:_MAX_ITEMS]  # type: ignore[call-overload]
            return [render_value(item, depth + 1, safe=safe) for item in items]
        if kind is dict:
            mapping: dict[object, object] = value  # type: ignore[assignment]
            return {
                render_key(k, safe=safe): render_value(v, depth + 1, safe=safe)
                for k, v in list(mapping.items())[:_MAX_ITEMS]
            }
    if safe:
        return placeholder(value)
    try:
        return render_value(str(value), depth + 1, safe=True)
    except Exception as exc:  # a broken __str__ (or one that recurses) must not lose the record
        return f"<unrepresentable {placeholder(value)[1:-1]}: {type(exc).__name__}>"


def int_text(value: int) -> str:
    """An int as text, or ``<int: N digits>`` past :data:`MAX_INT` (or past the process's
    own digit limit) — computed from its bit length, without converting it."""
    if MIN_INT < value < MAX_INT:
        try:
            return repr(value)
        except ValueError:  # sys.set_int_max_str_digits() set lower than MAX_INT's
            pass
    digits = int(abs(value).bit_length() * 0.30103) + 1
    return f"<int: ~{digits} digits>"


def render_key(key: object, *, safe: bool = False) -> str:
    """A mapping key as a string; a key whose ``__str__`` raises gets a placeholder."""
    kind = type(key)
    if kind is str:
        return key  # type: ignore[return-value]
    if kind is int:
        return int_text(key)  # type: ignore[arg-type]
    if kind is bool or kind is float or key is None:
        return str(key)
    rendered = render_value(key, _MAX_DEPTH, safe=safe)
    return rendered if type(rendered) is str else placeholder(key)


def placeholder(value: object) -> str:
    """``<TypeName>`` for a value whose text is not computed (no user code runs)."""
    try:
        return f"<{type(value).__name__}>"
    except Exception:  # a metaclass may make even this raise
        return "<object>"


def is_plain(value: object, depth: int = 0) -> bool:
    """True when rendering ``value`` runs no user code (builtins all the way down)."""
    kind = type(value)
    if kind is str or kind is float or kind is bool or value is None:
        return True
    if kind is int:  # a huge one is not formatted here (quadratic time: the helper's budget)
        return MIN_INT < value < MAX_INT  # type: ignore[operator]
    if depth >= _MAX_DEPTH:
        return False
    if kind is list or kind is tuple:
        items: list[object] = list(value)[:_MAX_ITEMS]  # type: ignore[call-overload]
        return all(is_plain(item, depth + 1) for item in items)
    if kind is dict:
        mapping: dict[object, object] = value  # type: ignore[assignment]
        return all(
            type(k) is str and is_plain(v, depth + 1) for k, v in list(mapping.items())[:_MAX_ITEMS]
        )
    return False


def plain_fields(fields: dict[str, object]) -> bool:
    """True when no value of ``fields`` needs user code to render (the common case)."""
    for value in fields.values():
        kind = type(value)
        builtin = kind is str or kind is int or kind is float or kind is bool or value is None
        if not builtin and not is_plain(value):
            return False
    return True


def render_fields(fields: dict[str, object], *, safe: bool = False) -> dict[str, JSONValue]:
    """Render every value of ``fields`` (see :func:`render_value`).

    Fast path: when every value is already a short string, an int of at most 4,300
    digits, a bool, None or a finite float — nearly always — the dict itself is returned
    (callers pass their fresh ``**kwargs`` dict, which nobody else holds).
    """
    for value in fields.values():
        kind = type(value)
        if kind is str:
            if len(value) > _MAX_TEXT:  # type: ignore[arg-type]
                break
        elif kind is int:
            if not MIN_INT < value < MAX_INT:  # type: ignore[operator]
                break
        elif kind is float:
            if value - value != 0.0:  # type: ignore[operator]  # NaN and ±inf
                break
        elif not (kind is bool or value is None):
            break
    else:
        return fields
    return {render_key(k, safe=safe): render_value(v, safe=safe) for k, v in fields.items()}


def second_formatter(
    fmt: str, convert: Callable[[float], time.struct_time]
) -> Callable[[int], str]:
    """Return ``ns → strftime(fmt)`` that formats each second only once (records of the
    same second share the prefix, so per record only the sub-second part is formatted)."""
    state: list[Any] = [-1, ""]

    def prefix(ns: int) -> str:
        second = ns // 1_000_000_000
        if second != state[0]:
            state[1] = time.strftime(fmt, convert(second))
            state[0] = second
        return str(state[1])

    return prefix


def iso_utc() -> Callable[[int], str]:
    """Return a function ``ns → "2026-11-21T10:00:00.123456Z"``; keep one per thread."""
    prefix = second_formatter("%Y-%m-%dT%H:%M:%S.", time.gmtime)

    def fmt(ns: int) -> str:
        # %-formatting: measurably cheaper here than an f-string with a format spec.
        return "%s%06dZ" % (prefix(ns), ns // 1000 % 1_000_000)  # noqa: UP031

    return fmt


def _encode(value: JSONValue) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return repr(value)
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _Renderer:
    """What both renderers share: a record that makes one raise is written again, made
    safe — so one record, never its batch, pays for a value the worker let through."""

    _falling_back = False

    def __call__(self, record: Record) -> str:
        raise NotImplementedError

    def _again(self, record: Record) -> str:
        """``record`` made safe (:func:`safe_record`) and rendered once more."""
        if self._falling_back:  # cannot happen with safe_record's builtins; never loops
            return '{"level":"error","msg":"<unrenderable record>"}'
        self._falling_back = True
        try:
            return self(safe_record(record))
        finally:
            self._falling_back = False


class JsonRenderer(_Renderer):
    """Renders a record as one JSON line (no newline). Not thread-safe: one per sink thread.

    >>> from loglog.types import Record
    >>> JsonRenderer(timestamp=False)(Record(1, 0, 20, "app", "hi", {"n": 1}))
    '{"level":"info","logger":"app","msg":"hi","n":1}'
    """

    def __init__(self, *, timestamp: bool = True) -> None:
        self._ts = iso_utc() if timestamp else None
        self._keys: dict[str, str] = {}  # field name → ',"name":' (reserved names prefixed)

    def _key(self, key: str) -> str:
        encoded = self._keys.get(key)
        if encoded is None:
            encoded = "," + encode_basestring("_" + key if key in RESERVED else key) + ":"
            if len(self._keys) < 10_000:
                self._keys[key] = encoded
        return encoded

    def __call__(self, record: Record) -> str:
        try:  # free unless it raises; no frame of its own: this is the delivery hot path
            parts = []
            if self._ts is not None:
                parts.append(f'{{"ts":"{self._ts(record.time_ns)}","level":"')
            else:
                parts.append('{"level":"')
            parts.append(level_name(record.level))
            parts.append('","logger":')
            parts.append(encode_basestring(record.logger))
            parts.append(',"msg":')
            parts.append(encode_basestring(record.message))
            keys = self._keys
            for key, value in record.fields.items():
                parts.append(keys.get(key) or self._key(key))
                kind = type(value)  # the common types inline: this loop is the delivery hot path
                if kind is str:
                    parts.append(encode_basestring(value))
                elif kind is int or kind is float:
                    parts.append(repr(value))
                else:
                    parts.append(_encode(value))
            if record.trace_id:  # escaped: a trace_id= field may hold any text
                parts.append(',"trace_id":' + encode_basestring(record.trace_id))
                parts.append(',"span_id":' + encode_basestring(record.span_id or ""))
            if record.exc_text:
                parts.append(f',"exc":{encode_basestring(record.exc_text)}')
            if record.replayed:
                parts.append(',"replayed":true')
            parts.append("}")
            return "".join(parts)
        except Exception:  # a value the worker should have rendered: this record only
            return self._again(record)


_COLORS = {
    "trace": "\x1b[2m",
    "debug": "\x1b[36m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;41m",
}
_RESET = "\x1b[0m"


class TextRenderer(_Renderer):
    """Renders a record for humans: ``10:00:00.123 INFO  decoder  frame decoded  stream=cam1``."""

    def __init__(self, *, color: bool = False) -> None:
        self._seconds = second_formatter("%H:%M:%S", time.localtime)
        self._color = color

    def __call__(self, record: Record) -> str:
        try:
            rest = record.time_ns % 1_000_000_000
            name = level_name(record.level)
            level = f"{name.upper():<8}"
            if self._color:
                level = f"{_COLORS.get(name, '')}{level}{_RESET}"
            extras = "".join(f"  {key}={_text(value)}" for key, value in record.fields.items())
            trace = f"  trace_id={record.trace_id}" if record.trace_id else ""
            line = (
                f"{self._seconds(record.time_ns)}.{rest // 1_000_000:03d} {level} {record.logger}  "
                f"{record.message}{extras}{trace}"
            )
            if record.exc_text:
                line = f"{line}\n{record.exc_text.rstrip()}"
            return line
        except Exception:  # a value the worker should have rendered: this record only
            return self._again(record)


def safe_record(record: Record) -> Record:
    """A copy of ``record`` that any renderer can write: every part re-rendered without
    user code (placeholders where needed), the time clamped to what ``gmtime`` takes. The
    renderers fall back to it when a record makes them raise, so that one record, not its
    batch, pays."""

    def text(value: object) -> str:
        rendered = render_value(value, safe=True)
        return rendered if type(rendered) is str else _encode(rendered)

    given = record.fields if type(record.fields) is dict else {"fields": record.fields}
    fields = {render_key(k, safe=True): render_value(v, safe=True) for k, v in given.items()}
    stamp = record.time_ns if type(record.time_ns) is int and 0 <= record.time_ns < 2**63 else 0
    return Record(
        seq=record.seq if type(record.seq) is int else -1,
        time_ns=stamp,
        level=record.level if type(record.level) is int else 40,
        logger=text(record.logger),
        message=text(record.message),
        fields=fields,
        trace_id=text(record.trace_id) if record.trace_id is not None else None,
        span_id=text(record.span_id) if record.span_id is not None else None,
        thread=text(record.thread),
        exc_text=text(record.exc_text) if record.exc_text is not None else None,
        internal=record.internal is True,
        replayed=record.replayed is True,
        thread_id=record.thread_id if type(record.thread_id) is int else 0,
    )


def _text(value: JSONValue) -> str:
    if type(value) is str:
        return value if value and " " not in value else json.dumps(value, ensure_ascii=False)
    return _encode(value)


def format_exc_safe(exc_info: object) -> str | None:
    """Like :func:`format_exc` without running user code (for the caller's thread): the
    frames, the exception's type, and its arguments only when they are builtins."""
    import traceback

    try:
        exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else exc_info
        if not isinstance(exc, BaseException):
            return None
        frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
        name = type(exc).__qualname__
        args = exc.args
        plain = type(exc).__str__ is BaseException.__str__ and is_plain(args)
        text = str(exc) if plain else placeholder(exc)
        return f"Traceback (most recent call last):\n{frames}{name}: {text}\n"
    except Exception as err:
        return f"<traceback unavailable: {type(err).__name__}>"


def format_exc(exc_info: object) -> str | None:
    """Render ``sys.exc_info()`` (or an exception) as a traceback string, never raising."""
    import traceback

    try:
        if isinstance(exc_info, BaseException):
            return "".join(traceback.format_exception(exc_info))
        if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
            return "".join(traceback.format_exception(*exc_info))
    except Exception as exc:
        return f"<traceback unavailable: {type(exc).__name__}>"
    return None
