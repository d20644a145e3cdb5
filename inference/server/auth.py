"""The control plane's bearer token: who may start streams, drills and recordings.

Bound to loopback, the token is optional (only local users reach the port). Bound to any
other address, the server refuses to start without one, because every mutating endpoint
would otherwise be open to the network. ``/metrics``, ``/healthz`` and ``/readyz`` stay
open: scrapers and orchestrators must not need the secret.

::

    token = load_token("/run/secrets/loglog_token")   # --token-file or LOGLOG_TOKEN_FILE
    require_token_for(host, token)                    # ConfigError with the fix, or None
    check_bearer(request.headers.get("authorization"), token)   # AuthError (401)
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat

from ..errors import AuthError, ConfigError

TOKEN_ENV = "LOGLOG_TOKEN_FILE"
MIN_TOKEN_CHARS = 16
_MAX_TOKEN_FILE = 4096


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the port to this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything, so treat it as exposed


def load_token(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (first line, stripped); ConfigError saying what to fix."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {name!r}: {exc.strerror}") from None
    # fstat before fdopen: fdopen of a directory raises IsADirectoryError (a traceback).
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"the token file {name!r} is not a regular file: give the file's path")
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(_MAX_TOKEN_FILE + 1).decode("utf-8", "replace")
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(text) > _MAX_TOKEN_FILE or len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"the token in {name!r} must be one line of {MIN_TOKEN_CHARS}–{_MAX_TOKEN_FILE} "
            "characters: create one with `openssl rand -hex 32 > token`"
        )
    return token


def require_token_for(
    host: str, token: str | None, exposes: str = "the control plane (streams, drills)"
) -> None:
    """Refuse a non-loopback bind without a token (the message is the fix); ``exposes``
    names what the port would open to the network (the jobs API passes its own)."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host} exposes {exposes} to the network: "
            "give a bearer token with --token-file FILE or LOGLOG_TOKEN_FILE=FILE "
            "(create one with `openssl rand -hex 32 > FILE`), or bind to 127.0.0.1"
        )


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Pass when no token is configured or the header carries it (compared in constant
    time); AuthError otherwise. The message never echoes what was sent."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise AuthError(
            "this endpoint needs the server's token: send 'Authorization: Bearer <token>' "
            "(the token is in the file given to --token-file)"
        )
