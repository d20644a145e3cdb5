"""Hypothesis strategies for hostile JSON request bodies, written as raw text.

``json.dumps`` cannot write what the red team sent (``NaN`` bare, ``1e400``, ``"\\ud800"``
escapes are what a hostile client types, not what a serialiser produces), so documents are
assembled from tokens: valid values, the values Python's parser accepts but JSON does not,
and the ones that parse into something a handler chokes on::

    @given(body=json_object({"source": st.just('"synthetic://64x48@10?seconds=1"')}))
    def test_x(body: str) -> None: ...
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Tokens Python's json module accepts and JSON does not, or that parse into values no
#: handler expects: non-finite and out-of-range numbers, lone surrogates, NUL, huge ints.
HOSTILE_TOKENS = (
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+999", "123456789" * 6,
    "-9223372036854775809", "1e-400", "-0", "0.0", "true", "false", "null",
    '"\\ud800"', '"\\udfff"', '"a\\ud800b"', '"\\udbff\\udfff"', '"\\u0000"', '"x\\u001b[31m"',
    '"\\ud83d\\ude00"', '""', "[]", "{}", '"' + "x" * 5000 + '"', "[" * 40 + "]" * 40,
)  # fmt: skip

_SCALARS = st.one_of(
    st.sampled_from(HOSTILE_TOKENS),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=30).map(json.dumps),
    st.booleans().map(json.dumps),
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


#: A raw JSON value (text): scalars and hostile tokens, nested in arrays and objects.
json_values = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(
            st.tuples(st.text(max_size=8).map(json.dumps) | st.sampled_from(['"\\ud800"']), inner),
            max_size=4,
        ).map(_object),
    ),
    max_leaves=10,
)


def json_object(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    """A raw JSON object with some of ``fields`` (each a valid value from its strategy, or
    any hostile value) and perhaps an unknown field; sometimes a whole other document."""
    field = st.sampled_from(sorted(fields)).flatmap(
        lambda name: st.tuples(st.just(json.dumps(name)), fields[name] | json_values)
    )
    extra = st.tuples(st.text(max_size=8).map(json.dumps), json_values)
    documents = st.lists(field | extra, max_size=len(fields) + 1).map(_object)
    return st.one_of(documents, documents, json_values)


def valid_string(text: str) -> st.SearchStrategy[str]:
    """A field strategy for one known-good string value."""
    return st.just(json.dumps(text))
