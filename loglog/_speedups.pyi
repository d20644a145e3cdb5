# Types of the C hot path (loglog/_speedups.c); see loglog.core and loglog.logger.
from collections.abc import Callable
from typing import Any

API: int

class Core:
    threshold: int
    emit: Callable[..., None]
    pipeline: Any

class Emitter:
    high: Callable[..., None]
    def __init__(
        self,
        high: Callable[..., None],
        low: Any,
        low_capacity: int,
        seq: Any,
        emitted: tuple[Any, ...],
        full: tuple[Any, ...],
        internal_errors: Any,
        context_get: Callable[[], Any],
        wake_fd: int,
        idle: list[bool],
    ) -> None: ...
    def __call__(
        self,
        level: int,
        name: str,
        msg: object,
        fields: dict[str, Any],
        bound: dict[str, Any] | None,
        exc: Any = None,
        time_ns: int = 0,
    ) -> None: ...

class LoggerBase:
    name: str
    _bound: dict[str, Any] | None
    _core: Core
    def trace(self, msg: object = "", /, *args: Any, **fields: Any) -> None: ...
    def debug(self, msg: object = "", /, *args: Any, **fields: Any) -> None: ...
    def info(self, msg: object = "", /, *args: Any, **fields: Any) -> None: ...
    def warning(self, msg: object = "", /, *args: Any, **fields: Any) -> None: ...
    def error(self, msg: object = "", /, *args: Any, **fields: Any) -> None: ...
    def critical(self, msg: object = "", /, *args: Any, **fields: Any) -> None: ...

def usable() -> bool: ...
def fields_dict(flat: tuple[Any, ...]) -> dict[str, Any]: ...
def set_fmt(cls: Callable[[object, tuple[Any, ...]], object]) -> None: ...
def set_normalisers(
    exact_name: Callable[[object], str], exact_bound: Callable[[object], dict[str, Any] | None]
) -> None: ...
def bound_of(logger: LoggerBase) -> dict[str, Any] | None: ...
