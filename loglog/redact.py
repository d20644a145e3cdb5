"""One way to keep credentials out of everything loglog and its users print.

Two things in a URL are secrets, and only those are replaced by ``***`` wherever a URL
appears in a log record, an API response, an error message or a metric label:

- **userinfo** — ``rtsp://user:pass@cam/…`` keeps the user and hides the password, and a
  lone ``https://TOKEN@host`` hides the token. Only when what follows the ``@`` is a host
  (a name with a letter, an IPv4 address, ``[v6]``, with an optional port): the source
  ``synthetic://640x480@15`` is a size and a frame rate, not a user at host ``15``;
- **secret parameters**, in the query or the fragment, matched by *pattern*, not by a
  list of exact names: case and ``-``/``_`` do not matter, camelCase is split, and a name is
  secret when one of its words is (``X-Amz-Signature``, ``X-Amz-Security-Token``,
  ``client_secret``, ``refresh_token``, ``api-key``, ``AWSAccessKeyId``, ``sig``,
  ``#access_token=`` …) or it ends like one run together (``apikey``, ``authtoken``).

It lives here because ``loglog`` depends on nothing of ours, so every package can use it::

    >>> redact_url("rtsp://admin:hunter2@10.0.0.7:554/live?token=abc&x=1")
    'rtsp://admin:***@10.0.0.7:554/live?token=***&x=1'
    >>> redact("could not open rtsp://u:p@cam/1: refused")
    'could not open rtsp://u:***@cam/1: refused'
    >>> redact("synthetic://640x480@15")
    'synthetic://640x480@15'
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["SECRET_WORDS", "is_secret_name", "redact", "redact_url"]

#: A parameter name with one of these words is a secret (``X-Amz-Security-Token``: token).
SECRET_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "credential",
        "credentials",
        "jwt",
        "key",
        "otp",
        "pass",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "session",
        "sessionid",
        "sig",
        "signature",
        "token",
    }
)
#: … and so is a name that ends with one of these run together (``apikey``, ``authtoken``).
_SECRET_ENDINGS = (
    "apikey",
    "accesskey",
    "accesskeyid",
    "authkey",
    "secretkey",
    "privatekey",
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "credentials",
    "sessionid",
)

# scheme://userinfo@host — userinfo is everything up to the last '@' before the path (a
# password may itself hold ':' or '@' when a user forgot to percent-encode it), and the
# host after it must look like one: a name with a letter, an IPv4 address or [IPv6], with
# an optional port, followed by anything but more of a host (a path, a comma, the end).
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]*)@"
    r"(?=(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%]*[A-Za-z][A-Za-z0-9\-._~%]*"
    r"|\d{1,3}(?:\.\d{1,3}){3})(?::\d*)?(?![\w\-.~%@:\[]))"
)
_PARAM = re.compile(r"(?P<key>[?&;#](?P<name>[A-Za-z0-9_.%\-]+)=)(?P<value>[^&#;\s]*)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def is_secret_name(name: str) -> bool:
    """Whether a query or fragment parameter called ``name`` holds a secret."""
    name = urllib.parse.unquote(name)
    words = [w for w in re.split(r"[-_.\s]+", _CAMEL.sub("_", name).lower()) if w]
    if any(word in SECRET_WORDS for word in words):
        return True
    squashed = "".join(words)
    return squashed.endswith(_SECRET_ENDINGS)


def _userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    if sep:
        return f"{match.group('scheme')}{user}:***@"
    # A lone userinfo is often a token (https://TOKEN@host): hide it too.
    return f"{match.group('scheme')}***@"


def _param(match: re.Match[str]) -> str:
    if match.group("value") and is_secret_name(match.group("name")):
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
    return _PARAM.sub(_param, text)


def redact_url(url: str) -> str:
    """A URL with its password and secret query parameters replaced by ``***``."""
    return redact(url)
