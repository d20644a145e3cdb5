"""Who may submit and cancel jobs, and which sources a job may name.

The jobs API applies the inference server's rules rather than its own copy of them:

- the bearer token (:mod:`inference.server.auth`): ``POST``/``DELETE`` on ``/v1/jobs``
  need ``Authorization: Bearer <token>`` when a token is configured, and ``loglog jobs
  serve`` refuses a non-loopback bind without one; reads, ``/metrics``, ``/healthz`` and
  ``/v1/sd/workers`` stay open for scrapers and dashboards;
- the source allow-list (:class:`inference.media.access.SourcePolicy`): the scheme must be
  allowed, a network source's host must pass the SSRF checks, and a file must lie under
  ``source_dirs``. Without it a job could name any file the API or its workers can read.

A refusal says what is allowed and never whether the path or port exists.
"""

from __future__ import annotations

import re

from inference.errors import SourceError
from inference.media.access import SourcePolicy

from .errors import SourceUnreadable
from .sources import MAX_SOURCE_CHARS

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_NETWORK = ("rtsp", "rtsps", "http", "https")


def check_source(policy: SourcePolicy, source: str) -> str:
    """``source`` as the job will store it (a file resolved to its real path) when
    ``policy`` allows it; :class:`SourceUnreadable` (HTTP 422) saying what is allowed
    otherwise. Network sources are checked too, before the API's "not a finite source"
    answer, so a private or loopback host is refused the same way whatever it serves."""
    if len(source) > MAX_SOURCE_CHARS:
        # Before anything resolves or echoes it: a megabyte "path" stays out of the answer.
        raise SourceUnreadable(
            f"the source is {len(source)} characters long: a path has at most "
            f"{MAX_SOURCE_CHARS} (PATH_MAX); give the video file's path"
        )
    text = source.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise SourceUnreadable("the source contains control characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: realpath() would raise on it (a 500)
            raise SourceUnreadable(
                "the source is not valid Unicode text (it has a lone surrogate): "
                "give the video file's path as UTF-8"
            ) from None
    if not text:
        raise SourceUnreadable(
            "no source given: use a video file path under the API's source dirs or "
            "synthetic://WxH@FPS?seconds=N"
        )
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else "file"
    try:
        if scheme in _NETWORK:
            policy.check_network(text)
            return text
        policy.check_scheme(scheme, text)
        if scheme != "file":
            return text  # synthetic://: generated in the worker, reads nothing
        return policy.check_file(text[len("file://") :] if match else text)
    except SourceError as exc:
        raise SourceUnreadable(str(exc)) from None


__all__ = ["SourcePolicy", "check_source"]
