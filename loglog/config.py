"""Configuration: one frozen dataclass, validated once, filled from arguments and ``LOGLOG_*``.

Every option ``name`` can also be set as the environment variable ``LOGLOG_<NAME>``
(``LOGLOG_LEVEL=debug``, ``LOGLOG_LOKI_URL=http://loki:3100``,
``LOGLOG_LOKI_LABELS=service=inference,env=prod``). Explicit arguments win over the
environment, which wins over defaults. Mistakes raise :class:`ConfigError` from
``configure()`` — at start-up, never from a log call. When the first log call configures
loglog from the environment (no ``configure()`` call), a bad ``LOGLOG_*`` value instead
falls back to that option's default with one stderr line naming it (see
:func:`build_config_lenient`). URLs in messages have their passwords redacted.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, MissingExtra
from .redact import redact_url
from .types import INFO, parse_level

ENV_PREFIX = "LOGLOG_"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Loki's documented defaults (limits_config): 15 labels per stream, name/value length.
LOKI_MAX_LABELS = 15
LOKI_MAX_LABEL_NAME = 1024
LOKI_MAX_LABEL_VALUE = 2048
_DYNAMIC_LABELS = ("level", "host", "logger")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogConfig:
    """Everything ``loglog.configure()`` accepts. Sizes are bytes, durations seconds."""

    level: int = INFO
    #: "text" (human, coloured on a TTY), "json", or None for no console output.
    console: str | None = "text"
    console_stream: str = "stderr"
    color: bool | None = None  # None: colour when the stream is a TTY
    #: Give up on a console write that cannot progress for this long (stalled pipe).
    console_write_timeout: float = 1.0
    file: str | None = None
    file_format: str = "json"
    file_max_bytes: int = 100 * 1024 * 1024  # rotate past this size; 0 disables rotation
    file_backups: int = 5
    loki_url: str | None = None
    loki_labels: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"service": "python"}
    )
    #: Labels taken from each record; keep them low-cardinality (tens of values).
    loki_dynamic_labels: tuple[str, ...] = ("level", "host")
    loki_tenant: str | None = None
    loki_batch_bytes: int = 1024 * 1024
    loki_batch_wait: float = 1.0
    loki_timeout: float = 10.0
    loki_backoff_min: float = 0.5
    loki_backoff_max: float = 300.0
    loki_max_retries: int = 10  # without a spill; with one, batches wait on disk instead
    loki_max_line_bytes: int = 256 * 1024
    loki_max_age: float = 7 * 24 * 3600.0
    loki_buffer_bytes: int = 32 * 1024 * 1024  # in-memory backlog when there is no spill
    loki_structured_metadata: bool = False
    otlp_endpoint: str | None = None
    #: Records the caller-side queue holds for DEBUG/INFO. WARNING+ has a reserve of its own
    #: (a quarter of this) and may then take the place of queued DEBUG/INFO records.
    capacity: int = 10_000
    spill_dir: str | None = None
    spill_max_bytes: int = 256 * 1024 * 1024
    #: WARNING+ records the crash spool protects at once (8 KiB each, allocated on disk at
    #: configure time). A SIGKILL loses nothing of the last ``spool_slots`` WARNING+ records
    #: not yet delivered; older undelivered ones are counted as ``lost_in_crash`` next start.
    spool_slots: int = 512
    #: Longest the worker waits for one record's user ``__str__``/``__repr__`` calls before
    #: it writes ``<timed out>`` in their place and moves on.
    render_timeout: float = 0.1
    #: Longest a record waits in the queue before the worker wakes on its own.
    poll_interval: float = 0.05
    shutdown_timeout: float = 2.0

    def __post_init__(self) -> None:
        self._check()

    @property
    def high_capacity(self) -> int:
        """The WARNING+ reserve: a flood of INFO never takes its room."""
        return max(self.capacity // 4, 64)

    def _check(self) -> None:
        if self.console not in (None, "text", "json"):
            _fail("console", self.console, 'use "text", "json" or None')
        if self.console_stream not in ("stderr", "stdout"):
            _fail("console_stream", self.console_stream, 'use "stderr" or "stdout"')
        if self.file_format not in ("json", "text"):
            _fail("file_format", self.file_format, 'use "json" or "text"')
        if self.capacity < 1:
            _fail("capacity", self.capacity, "use a positive number of records")
        if not 1 <= self.spool_slots <= 1 << 20:
            _fail("spool_slots", self.spool_slots, "use 1 to 1048576 slots")
        for name in (
            "console_write_timeout",
            "loki_batch_wait",
            "loki_timeout",
            "loki_backoff_min",
            "loki_backoff_max",
            "poll_interval",
            "render_timeout",
        ):
            if getattr(self, name) <= 0:
                _fail(name, getattr(self, name), "use a positive number of seconds")
        if self.shutdown_timeout < 0:
            _fail("shutdown_timeout", self.shutdown_timeout, "use 0 or more seconds")
        if self.loki_backoff_max < self.loki_backoff_min:
            _fail("loki_backoff_max", self.loki_backoff_max, "must be ≥ loki_backoff_min")
        for name in ("loki_batch_bytes", "loki_max_line_bytes", "loki_buffer_bytes"):
            if getattr(self, name) < 1024:
                _fail(name, getattr(self, name), "use at least 1024 bytes")
        if self.loki_url is not None and not _valid_url(self.loki_url):
            _fail("loki_url", self.loki_url, "use http(s)://host:port, e.g. http://loki:3100")
        if self.otlp_endpoint is not None and not _valid_url(self.otlp_endpoint):
            _fail("otlp_endpoint", self.otlp_endpoint, "use http(s)://host:4318/v1/logs")
        if self.otlp_endpoint is not None and not _importable(_OTLP_EXPORTER):
            raise MissingExtra(
                "otlp", "loglog's otlp_endpoint", _OTLP_EXPORTER, option="otlp_endpoint"
            )
        self._check_labels()

    def _check_labels(self) -> None:
        for key in self.loki_dynamic_labels:
            if key not in _DYNAMIC_LABELS:
                _fail("loki_dynamic_labels", key, f"choose from {', '.join(_DYNAMIC_LABELS)}")
        names = list(self.loki_labels) + list(self.loki_dynamic_labels)
        if len(names) > LOKI_MAX_LABELS:
            _fail("loki_labels", names, f"Loki accepts at most {LOKI_MAX_LABELS} labels a stream")
        if len(set(names)) != len(names):
            _fail("loki_labels", names, "a label is both static and dynamic; keep one")
        for name, value in self.loki_labels.items():
            if not _LABEL_NAME.match(name) or len(name) > LOKI_MAX_LABEL_NAME:
                _fail("loki_labels", name, "label names are [a-zA-Z_][a-zA-Z0-9_]*")
            if not isinstance(value, str) or not value or len(value) > LOKI_MAX_LABEL_VALUE:
                _fail(
                    "loki_labels",
                    f"{name}={value!r}",
                    f"label values are non-empty strings ≤ {LOKI_MAX_LABEL_VALUE} chars",
                )


def _valid_url(url: object) -> bool:
    """http(s), a host, and a port that exists (urlsplit only checks it when asked)."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of 0-65535 or not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _shown(value: object) -> str:
    """An option value as error messages show it: URLs without their passwords."""
    return repr(redact_url(value)) if isinstance(value, str) and "://" in value else repr(value)


def _fail(option: str, value: object, fix: str) -> None:
    raise ConfigError(f"loglog option {option}={_shown(value)} is invalid: {fix}", option=option)


def build_config(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> LogConfig:
    """Merge explicit ``options`` over ``LOGLOG_*`` variables of ``environ`` into a config.

    >>> build_config({"level": "debug"}, environ={}).level
    10
    """
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(LogConfig)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown loglog option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        env_name = ENV_PREFIX + name.upper()
        if name in options:
            values[name] = _coerce(name, field.type, options[name], source=name)
        elif env_name in environ:
            values[name] = _coerce(name, field.type, environ[env_name], source=env_name)
    return LogConfig(**values)


#: The module the OTLP sink exports with (loglog/sinks/otlp.py).
_OTLP_EXPORTER = "opentelemetry.exporter.otlp.proto.http"


def _importable(module: str) -> bool:
    """Whether ``module`` is installed (looked up, not imported: its parents only)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def build_config_lenient(
    environ: Mapping[str, str] | None = None,
) -> tuple[LogConfig, list[str]]:
    """The configuration a log call uses when nobody called ``configure()``: never raises.

    Each ``LOGLOG_*`` value that is invalid (alone or together with the others) is dropped
    in favour of its default; the returned messages name each one and its fix, for one
    stderr line apiece.

    >>> config, problems = build_config_lenient({"LOGLOG_CAPACITY": "lots"})
    >>> config.capacity, problems[0].split(":")[0]
    (10000, "loglog option LOGLOG_CAPACITY='lots' is invalid")
    """
    environ = dict(os.environ if environ is None else environ)
    names = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(LogConfig)}
    environ = {key: value for key, value in environ.items() if key in names}
    problems: list[str] = []
    for _ in range(len(names) + 1):
        try:
            return build_config({}, environ), problems
        except ConfigError as exc:
            key = ENV_PREFIX + exc.option.upper() if exc.option else ""
            if key not in environ:  # a problem no single variable explains: all defaults
                problems.append(f"{exc}; using defaults for every LOGLOG_* option")
                return LogConfig(), problems
            problems.append(f"{exc}; using the default for {key}")
            del environ[key]
        except Exception as exc:  # a log call must never raise
            problems.append(f"loglog environment unusable ({type(exc).__name__}); defaults")
            return LogConfig(), problems
    return LogConfig(), problems


def _coerce(name: str, kind: Any, value: Any, *, source: str) -> Any:
    """Turn an argument or environment string into the option's type, or explain why not."""
    kind = str(kind)
    try:
        if name == "level":
            return parse_level(value)
        empty = value is None or (isinstance(value, str) and value.lower() in ("", "none", "off"))
        if empty and "None" in kind:
            return None
        if kind.startswith("bool"):
            return _to_bool(value)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("Mapping"):
            return _to_mapping(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(value)
        if kind.startswith("str") and not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"loglog option {source}={_shown(value)} is invalid: {exc}", option=name
        ) from exc


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    if text in ("auto", ""):
        return None
    raise ValueError("use true/false")


def _to_mapping(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    result: dict[str, str] = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value pairs separated by commas, got {part!r}")
        result[key.strip()] = val.strip()
    return result
