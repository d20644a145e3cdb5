"""Exact names and plain dicts: the only names and mappings loglog's threads touch.

A ``str`` subclass can redefine ``__hash__``, ``__eq__``, ``__format__`` or ``__radd__``; a
``dict`` subclass ``keys()``, ``__iter__`` and ``__getitem__``. Hashing such a field name,
merging such a mapping or formatting such a logger name runs that code — on whichever
thread does it. So every logger name and field name becomes an exact ``str`` and every
field mapping a plain ``dict`` of them before any dict operation or renderer meets it; the
worker and the sinks only ever meet builtins (values of other types are rendered by the
bounded render helper, see :mod:`loglog.render`). Where that happens:

- a logger's name and bound fields: on the caller's thread, when they are set
  (:func:`exact_name`, :func:`exact_bound`; ``Logger()``, ``bind()``, assignment);
- field names on the C path: on the caller's thread, by the level methods
  (loglog/_speedups.c: one type check per name, a copy for a subclass);
- field names on the Python path, and whatever else reaches the queue (the stdlib
  bridge's ``extra=`` keys, a direct ``emit`` call): on the worker, by :func:`safe_fields`
  *before* any dict operation — a per-name check on the caller would cost the Python
  path a fifth of its call, and looking at types and copying characters runs no code of
  anyone's on the worker either.

Exact types pass through after one type check; only the unusual case pays:

- a ``str`` subclass is copied with ``str.__str__``, which copies the characters and never
  calls the subclass's methods (so its own ``__str__`` is not consulted either);
- ``None``, ``bool``, ``int`` and ``float`` names become their builtin text;
- any other name becomes ``<TypeName>`` — its ``__str__`` is not called;
- a mapping that is not a plain ``dict`` is read once through ``dict(mapping)`` — the
  mapping protocol, its own code, on the caller's thread, like any argument it passes
  (on the worker, :func:`safe_fields` never reads it: ``{"fields": "<TypeName>"}``).
"""

from __future__ import annotations

from typing import Any

from .format import placeholder


def exact_name(value: object) -> str:
    """``value`` as an exact ``str``, without running code of its type.

    >>> class Name(str):
    ...     def __hash__(self): raise RuntimeError("never on loglog's threads")
    >>> type(exact_name(Name("stream"))) is str, exact_name(3), exact_name(object())
    (True, '3', '<object>')
    """
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if issubclass(kind, str):  # checks the type, not value.__class__ (which code could fake)
        return str.__str__(value)
    if kind is bool or value is None:
        return str(value)
    if kind is int or kind is float:
        try:
            return repr(value)
        except ValueError:  # an int over sys.get_int_max_str_digits()
            return placeholder(value)
    return placeholder(value)


def exact_fields(fields: object) -> dict[str, Any]:
    """A new plain ``dict`` of ``fields`` whose keys are exact ``str`` (see the module
    docstring); what is not a mapping becomes ``{"fields": "<TypeName>"}``.

    >>> exact_fields({"a": 1}), exact_fields([("b", 2)]), exact_fields(7)
    ({'a': 1}, {'b': 2}, {'fields': '<int>'})
    """
    if type(fields) is not dict:
        try:
            fields = dict(fields)  # type: ignore[call-overload]
        except Exception:
            return {"fields": placeholder(fields)}
    assert type(fields) is dict
    # A plain dict's items() runs no code of its keys or values; neither does inserting
    # exact str keys into a new dict.
    return {exact_name(key): value for key, value in fields.items()}


def safe_fields(fields: object) -> dict[str, Any]:
    """``fields`` as a plain dict of exact-``str`` keys without running code of anyone's
    (for the worker): a plain dict is read with ``dict.items``, its keys made exact with
    :func:`exact_name`; anything else becomes ``{"fields": "<TypeName>"}``.

    >>> class Name(str):
    ...     def __eq__(self, other): raise RuntimeError("never on loglog's threads")
    >>> [type(key) for key in safe_fields({Name("a"): 1})], safe_fields(["x"])
    ([<class 'str'>], {'fields': '<list>'})
    """
    if type(fields) is not dict:
        return {"fields": placeholder(fields)}
    return {exact_name(key): value for key, value in dict.items(fields)}


def exact_bound(bound: object) -> dict[str, Any] | None:
    """Bound fields as a logger keeps them: None when there are none, else a plain dict
    of exact-``str`` keys that only the logger holds."""
    if bound is None:
        return None
    return exact_fields(bound) or None
