"""Which extra each part of loglog needs, and the one line that says so when it is missing.

``pip install loglog`` is the logger alone; every other part comes with an extra
(pyproject.toml). A subcommand declares its extra where it is declared
(``parser.set_defaults(extra="serve")``); ``loglog`` checks it with :func:`require`
before running the subcommand, so a missing package is one line naming the extra, exit
status 2, never a traceback from deep inside an import::

    $ loglog up
    loglog up needs the 'serve,agent' extras: in loglog's checkout, pip install '.[serve,agent]'

:data:`PARTS` says which extra each part of the code needs;
tests/packaging/test_extras.py reads every module's imports and fails when a third-party
import is not among the packages of its part's extra, so this table cannot rot.
"""

from __future__ import annotations

import importlib.util

from loglog.errors import MissingExtra

#: The modules that show an extra is installed: one from each package the extra brings
#: that its commands import first.
PROBES: dict[str, tuple[str, ...]] = {
    "prometheus": ("prometheus_client",),
    "otlp": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "serve": ("prometheus_client", "numpy", "yaml", "fastapi", "uvicorn", "onnxruntime", "av"),
    "agent": ("prometheus_client", "pynvml", "uvicorn", "starlette"),
    "fleet": ("celery", "redis", "fastapi", "numpy"),
    "report": ("matplotlib", "prometheus_client", "yaml"),
    "dashboards": ("yaml", "grafana_client"),
    "torch": ("torch",),
    "gpu": ("tensorrt",),
}

#: The extra (or extras, comma-separated) each part of the code needs, by module prefix;
#: the longest prefix that matches a module wins. ``None``: the logger alone, where only
#: imports guarded by ``except ImportError`` may name a third-party package.
PARTS: dict[str, str | None] = {
    "loglog": None,
    "loglog.metrics": "prometheus",
    "loglog.sinks.otlp": "otlp",
    # Its module-level import is guarded; the rest runs only on a context of OpenTelemetry's.
    "loglog.tracing": "otlp",
    "inference": "serve",
    "inference.engines.torch": "serve,torch",
    "inference.engines.tensorrt": "serve,gpu,torch",  # PyTorch allocates its GPU buffers
    "agent": "agent",
    "alerts": "dashboards",  # rule generation (YAML); `loglog up` writes them too (serve)
    "dashboards": "dashboards",
    "report": "report",
    "fleet": "fleet",
    "stack": "serve,agent",  # `loglog up` runs the server and the agent
    "stack.cli": None,
    "stack.extras": None,
    "stack.options": None,
    "stack.proctitle": None,  # setproctitle is optional there (guarded)
    "stack.receiver": "serve",
    "stack.receiver_cli": None,
    "httpkit": "serve",  # uvicorn, h11, Starlette; the agent's extra brings them too
    "hardware": None,
    "stack.compose": "dashboards",
}


def require(extra: str, *modules: str, what: str = "this") -> None:
    """Raise :class:`~loglog.errors.MissingExtra` naming ``extra`` unless each of
    ``modules`` (default: the :data:`PROBES` of each extra in ``extra``, which may be a
    comma-separated list) can be imported. Looks modules up without importing them.

    >>> require("prometheus", what="loglog receiver")   # doctest: +SKIP
    """
    names = [name.strip() for name in extra.split(",")]
    for name in names:
        if name not in PROBES:
            raise ValueError(f"unknown extra {name!r}: use one of {', '.join(PROBES)}")
    wanted = modules or tuple(module for name in names for module in PROBES[name])
    for module in wanted:
        if not _importable(module):
            raise MissingExtra(",".join(names), what, module)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or broken
        return False


def part_of(module: str) -> str | None:
    """The extra(s) :data:`PARTS` names for ``module`` (a dotted name); ``KeyError`` for
    a module of no known part."""
    best = max((prefix for prefix in PARTS if _within(module, prefix)), key=len, default=None)
    if best is None:
        raise KeyError(f"{module} is in no part of stack.extras.PARTS: add its package")
    return PARTS[best]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")
