"""Runtime configuration: a frozen dataclass from YAML or TOML, and a reloading watcher.

::

    # serve.yaml
    max_batch: 8          # dynamic batching: at most this many items per engine call
    max_wait_ms: 5        # … or dispatch when the first item has waited this long
    workers: {preprocess: 1, postprocess: 1, encode: 1, infer: 1}
    sampling_ratio: 0.01  # share of frames/requests traced

``max_batch``, ``max_wait_ms``, ``workers`` and ``sampling_ratio`` are applied live when
the file changes. Changing anything else needs a restart: such a reload is rejected with
a message saying so, and the running configuration stays. A bad file at start-up fails
the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import stat
import threading
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml

from .errors import ConfigError
from .types import STAGES

RELOADABLE = frozenset({"max_batch", "batch_policy", "max_wait_ms", "workers", "sampling_ratio"})
_STAGE_WORKERS = STAGES  # every stage has workers (decode's serve HTTP bodies)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Everything the runtime can be told; see the module docstring for the file form."""

    max_batch: int = 8
    #: "calibrated": batch only up to the calibrated size with the best capacity (≤
    #: max_batch); "max": always fill batches up to max_batch.
    batch_policy: str = "calibrated"
    max_wait_ms: float = 5.0
    workers: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(STAGES, 1))
    sampling_ratio: float = 0.01
    queue_capacity: int = 64
    max_streams: int = 16
    stream_buffer: int = 4  # frames a live stream may hold while the pipeline is busy
    engine_threads: int | None = None
    #: true: a CPU engine with one thread gets a core of its own, every other server
    #: thread the rest, where that applies (inference/tuning/affinity.py); false: the OS
    #: schedules everything.
    pin_engine: bool = True
    #: Streams decode and preprocess in this many worker processes (one per stream until
    #: there are this many), handing tensors over through shared memory; 0: on a thread
    #: each in the server's process, as before; null: one per usable core but one
    #: (inference/feed). A stream that records (record=) always decodes on a thread.
    decode_processes: int | None = None
    #: Where servers on this host claim cores, so that no two engines and no two decode
    #: processes are pinned to one core (inference/feed/claims.py); null: the host's
    #: default folder (/run/lock/loglog-cores); "": no claims (pin without asking).
    core_claims_dir: str | None = None
    calibration_seconds: float = 1.0
    #: How long a thread may hold the GIL while another waits for it (ms; 0: Python's own,
    #: 5). The engine thread gives the GIL up during every batch and waits up to this
    #: long to get it back while decode and HTTP threads run Python (inference/tuning/gil.py).
    gil_switch_interval_ms: float = 1.0
    #: glibc's trim threshold, fixed at start (bytes). Freed memory above it at the top
    #: of any heap goes back to the OS at once; dynamic, it grows to twice the largest
    #: freed buffer in every arena (inference/tuning/memory.py). Both thresholds 0: glibc's
    #: dynamic ones; one 0 next to a set one: glibc's default, 128 KiB, set for it
    #: (setting either turns glibc's adjustment off for both).
    malloc_trim_threshold: int = 2 * 1024 * 1024
    #: glibc's mmap threshold, fixed at start (bytes; 0: see above). Buffers below it come
    #: from the heaps, larger ones are mapped and unmapped on every allocation.
    malloc_mmap_threshold: int = 16 * 1024 * 1024
    top_k: int = 5
    results_path: str | None = None
    monitor_interval_s: float = 1.0
    monitor_window_s: float = 10.0
    # -- limits and the control plane (README: "Security and limits") --
    max_body_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_tensor_elements: int = 16 * 1024 * 1024
    #: Σ width × height × fps over running streams (16 × 1080p30 ≈ 1.0e9).
    max_stream_pixel_rate: float = 1.0e9
    #: Connections (plus in-flight requests) past which new ones get a 503 at once.
    max_connections: int = 512
    # -- overload (README: "Overload") --
    #: The latency SLO the alerts use (alerts/config.py's latency_slo_seconds): requests'
    #: default deadline is 0.8 × this, the rest being margin for the last stages and the
    #: network.
    latency_slo_s: float = 1.0
    #: A request's deadline, seconds after it arrived (null: 0.8 × latency_slo_s). One that
    #: cannot be answered by then is refused at once (503 + Retry-After).
    request_timeout_s: float | None = None
    #: The most a client may ask for with the X-Request-Timeout header (larger is capped).
    max_request_timeout_s: float = 30.0
    #: A connection whose request headers are not complete after this long is closed.
    header_timeout_s: float = 10.0
    #: A request body not fully received after this long is answered 408.
    body_timeout_s: float = 30.0
    #: Seconds an ended or failed stream stays listed (and counted) before it is reaped.
    stream_reap_s: float = 60.0
    #: ``record=`` names a new file in this directory; nothing is written elsewhere.
    record_dir: str = "recordings"
    #: Directories file sources may be read from (empty: no file sources).
    source_dirs: tuple[str, ...] = (".",)
    #: URL schemes a stream source may use.
    source_schemes: tuple[str, ...] = ("synthetic", "file", "rtsp", "rtsps", "http", "https")
    #: Hosts or CIDRs network sources may reach; empty: any public address. Private,
    #: loopback and link-local addresses are refused unless listed here.
    source_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_types(self)
        checks: list[tuple[bool, str]] = [
            (1 <= self.max_batch <= 1024, "max_batch must be 1–1024"),
            (self.batch_policy in ("calibrated", "max"), 'batch_policy is "calibrated" or "max"'),
            (0 <= self.max_wait_ms <= 10_000, "max_wait_ms must be 0–10000"),
            (0.0 <= self.sampling_ratio <= 1.0, "sampling_ratio must be between 0 and 1"),
            (2 <= self.queue_capacity <= 100_000, "queue_capacity must be 2–100000"),
            (1 <= self.max_streams <= 1000, "max_streams must be 1–1000"),
            (1 <= self.stream_buffer <= 1000, "stream_buffer must be 1–1000"),
            (
                self.engine_threads is None or 1 <= self.engine_threads <= 256,
                "engine_threads must be 1–256",
            ),
            (
                self.decode_processes is None or 0 <= self.decode_processes <= 64,
                "decode_processes must be 0–64 (0: decode on threads), or null for one per core",
            ),
            (0.05 <= self.calibration_seconds <= 60, "calibration_seconds must be 0.05–60"),
            (
                self.gil_switch_interval_ms == 0 or 0.1 <= self.gil_switch_interval_ms <= 100,
                "gil_switch_interval_ms must be 0 (Python's default) or 0.1–100",
            ),
            (
                self.malloc_trim_threshold == 0 or 4096 <= self.malloc_trim_threshold <= 2**30,
                "malloc_trim_threshold must be 0 (glibc's default) or 4096–2^30 bytes",
            ),
            (
                self.malloc_mmap_threshold == 0 or 4096 <= self.malloc_mmap_threshold <= 2**25,
                "malloc_mmap_threshold must be 0 (glibc's default) or 4096–2^25 bytes",
            ),
            (1 <= self.top_k <= 1000, "top_k must be 1–1000"),
            (0.05 <= self.monitor_interval_s <= 60, "monitor_interval_s must be 0.05–60"),
            (
                self.monitor_window_s >= self.monitor_interval_s,
                "monitor_window_s must be ≥ monitor_interval_s",
            ),
            (1024 <= self.max_body_bytes <= 2**31, "max_body_bytes must be 1024–2^31"),
            (1 <= self.max_image_pixels <= 2**31, "max_image_pixels must be 1–2^31"),
            (1 <= self.max_tensor_elements <= 2**31, "max_tensor_elements must be 1–2^31"),
            (0 < self.max_stream_pixel_rate <= 1e12, "max_stream_pixel_rate must be > 0"),
            (0 <= self.stream_reap_s <= 86_400, "stream_reap_s must be 0–86400"),
            (1 <= self.max_connections <= 100_000, "max_connections must be 1–100000"),
            (0.01 <= self.latency_slo_s <= 600, "latency_slo_s must be 0.01–600"),
            (
                self.request_timeout_s is None or 0.001 <= self.request_timeout_s <= 3600,
                "request_timeout_s must be null or 0.001–3600",
            ),
            (
                0.001 <= self.max_request_timeout_s <= 3600,
                "max_request_timeout_s must be 0.001–3600",
            ),
            (
                self.request_timeout_s is None
                or self.request_timeout_s <= self.max_request_timeout_s,
                "request_timeout_s must be ≤ max_request_timeout_s",
            ),
            (0.1 <= self.header_timeout_s <= 600, "header_timeout_s must be 0.1–600"),
            (0.1 <= self.body_timeout_s <= 3600, "body_timeout_s must be 0.1–3600"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        unknown = set(self.workers) - set(_STAGE_WORKERS)
        if unknown:
            raise ConfigError(
                f"workers: unknown stage(s) {', '.join(sorted(unknown))}; "
                f"stages with workers are {', '.join(_STAGE_WORKERS)}"
            )
        for stage, count in self.workers.items():
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 64:
                raise ConfigError(f"workers.{stage} must be a whole number 1–64, got {count!r}")
        object.__setattr__(
            self, "workers", {stage: int(self.workers.get(stage, 1)) for stage in _STAGE_WORKERS}
        )
        for name in ("source_dirs", "source_schemes", "source_hosts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


def _check_types(config: RuntimeConfig) -> None:
    """Strict types, checked by pydantic: ``max_batch: 8.5`` or ``true`` is an error, not
    8 or 1. A float option takes an int (``max_wait_ms: 5``) but never a bool; NaN and
    infinity are no number to configure."""
    model, nullable = _type_model()
    try:
        model.model_validate({name: getattr(config, name) for name in model.model_fields})
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        value = getattr(config, name)
        words = _WORDS[error["type"]] if len(error["loc"]) == 1 else _WORDS["list_type"]
        if value in (math.inf, -math.inf):
            words = "a finite number"
        if name in nullable:
            words += " or null"
        shown = "NaN" if isinstance(value, float) and value != value else _show(value)
        raise ConfigError(f"{name} must be {words}, got {shown}") from None


@functools.cache
def _type_model() -> tuple[type[pydantic.BaseModel], frozenset[str]]:
    """RuntimeConfig's fields as a strict pydantic model (built once), and the names of
    those that take null. YAML and TOML give lists where the dataclass keeps tuples;
    ``workers`` is any mapping here, its counts checked with their stage's name."""
    hints = typing.get_type_hints(RuntimeConfig)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(RuntimeConfig):
        hint = hints[field.name]
        origin = typing.get_origin(hint)
        if origin is tuple:
            hint = list[typing.get_args(hint)[0]] | hint  # type: ignore[misc]
        elif origin is Mapping:
            hint = Annotated[Mapping[Any, Any], pydantic.Strict(False)]
        fields[field.name] = (hint, ...)
    model = pydantic.create_model(
        "RuntimeConfigTypes",
        __config__=pydantic.ConfigDict(strict=True, allow_inf_nan=False),
        **fields,
    )
    nullable = frozenset(
        name for name, hint in hints.items() if type(None) in typing.get_args(hint)
    )
    return model, nullable


#: What each of pydantic's type errors asks for, in the words of a config file; an error
#: inside a value (an item of a list) asks for what the whole value is: a list of strings.
_WORDS = {
    "int_type": "a whole number",
    "float_type": "a number",
    "finite_number": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list of strings",
    "tuple_type": "a list of strings",
    "dict_type": "a mapping of stage: count",
    "mapping_type": "a mapping of stage: count",
}


def _show(value: Any) -> str:
    """A short, safe rendering of a config value for an error message (never a huge repr:
    an alias-expanded YAML value could be megabytes)."""
    text = (
        repr(value)
        if isinstance(value, (int, float, str, bool, type(None)))
        else type(value).__name__
    )
    return text if len(text) <= 60 else text[:57] + "..."


#: A config file larger than this is refused (a real one is a few hundred bytes).
MAX_CONFIG_BYTES = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors/aliases: a "billion laughs" file cannot expand to gigabytes
    (a 1 KB alias bomb froze the server for 8 s). A runtime config never needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a config", event.start_mark
            )
        return super().compose_node(parent, index)


def read_config_text(file: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """The file's text, if it is a regular file under ``limit`` bytes. Opened without
    blocking, so a FIFO or device put in its place cannot hang the caller."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(file)!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config {str(file)!r} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"config {str(file)!r} is over {limit} bytes; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {str(file)!r} is not UTF-8 text") from exc


def load_config(path: str | os.PathLike[str], base: RuntimeConfig | None = None) -> RuntimeConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file over ``base`` (default values)."""
    file = Path(path)
    if file.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config {str(file)!r}: use a .yaml, .yml or .toml file")
    text = read_config_text(file)
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.load(text, Loader=_NoAliasLoader) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError, RecursionError) as exc:
        detail = str(exc)[:300]
        raise ConfigError(f"config {str(file)!r} does not parse: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(file)!r} must be a mapping of option: value")
    return build(data, base)


def build(data: Mapping[str, Any], base: RuntimeConfig | None = None) -> RuntimeConfig:
    """Apply ``data`` over ``base``; unknown keys and wrong types fail with a clear message."""
    fields = {f.name: f for f in dataclasses.fields(RuntimeConfig)}
    bad = [key for key in data if not isinstance(key, str)]
    if bad:
        raise ConfigError(f"option names must be strings, got {_show(bad[0])}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)[:200]}; known: {', '.join(sorted(fields))}"
        )
    values = dataclasses.asdict(base) if base is not None else {}
    values.update(data)
    try:
        return RuntimeConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid config: {exc}") from exc


class ConfigWatcher:
    """Polls a config file; applies reloadable changes, rejects the rest, counts both.

    ``apply(new, old)`` is called with the new config when a change is accepted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        current: RuntimeConfig,
        apply: Callable[[RuntimeConfig, RuntimeConfig], None],
        *,
        on_result: Callable[[str, str], None],
        interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.current = current
        self._apply = apply
        self._on_result = on_result
        self._interval = interval
        self._stamp = self._stat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _stat(self) -> tuple[float, int] | None:
        try:
            info = self.path.stat()
            return (info.st_mtime, info.st_size)
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            # check() counts its own failures; nothing may end this thread.
            with contextlib.suppress(Exception):
                self.check()

    def check(self) -> str | None:
        """Reload if the file changed; returns "applied", "rejected" or None."""
        stamp = self._stat()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = load_config(self.path)
            fixed = [
                f.name
                for f in dataclasses.fields(RuntimeConfig)
                if f.name not in RELOADABLE
                and getattr(new, f.name) != getattr(self.current, f.name)
            ]
            if fixed:
                raise ConfigError(
                    f"{', '.join(fixed)} cannot change while serving; restart to apply "
                    f"(live: {', '.join(sorted(RELOADABLE))})"
                )
            self._apply(new, self.current)
        except ConfigError as exc:
            self._on_result("rejected", str(exc))
            return "rejected"
        except Exception as exc:  # the watcher must outlive any bad file or apply bug
            self._on_result("rejected", f"{type(exc).__name__}: {str(exc)[:300]}")
            return "rejected"
        self.current = new
        self._on_result("applied", "")
        return "applied"
