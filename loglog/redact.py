"""One way to keep credentials out of everything loglog and its users print.

A URL's password (``rtsp://user:pass@cam/…``) and secret-looking query parameters
(``?token=…``) are replaced by ``***`` wherever a URL appears in a log record, an API
response, an error message or a metric label. It lives here because ``loglog`` depends on
nothing of ours, so every other package can use it::

    >>> redact_url("rtsp://admin:hunter2@10.0.0.7:554/live?token=abc&x=1")
    'rtsp://admin:***@10.0.0.7:554/live?token=***&x=1'
    >>> redact("could not open rtsp://u:p@cam/1: refused")
    'could not open rtsp://u:***@cam/1: refused'
"""

from __future__ import annotations

import re

__all__ = ["SECRET_PARAMS", "redact", "redact_url"]

#: Query parameters whose values are secrets (matched case-insensitively).
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "signature",
        "sig",
        "auth",
        "authorization",
        "credential",
        "credentials",
    }
)

# scheme://userinfo@ — userinfo is everything up to the last '@' before the path. A
# password may itself contain ':' or '@' when a user forgot to percent-encode it, so the
# match is greedy up to the last '@' that precedes any '/', '?' or '#'.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#;\s]*)")


def _userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    if sep:
        return f"{match.group('scheme')}{user}:***@"
    # A lone userinfo is often a token (https://TOKEN@host): hide it too.
    return f"{match.group('scheme')}***@"


def _query(match: re.Match[str]) -> str:
    if match.group("name").lower() in SECRET_PARAMS and match.group("value"):
        return f"{match.group('key')}***"
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    Works on free text (error messages, log lines) as well as on a bare URL. Never raises:
    a non-string is converted with ``str()`` first.
    """
    if not isinstance(text, str):
        text = str(text)
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(_userinfo, text)
    return _QUERY_SECRET.sub(_query, text)


def redact_url(url: str) -> str:
    """A URL with its password and secret query parameters replaced by ``***``."""
    return redact(url)
