"""loglog's last word: a line written to fd 2 directly.

For what loglog must say about itself (a stale build, an unusable spool, a bad setting)
when its own pipeline may be the thing that is broken: never ``sys.stderr``'s lock (held,
perhaps, by the thread that is logging), never an exception.
"""

from __future__ import annotations

import os


def stderr_line(text: str) -> None:
    """Write ``text`` (ending in a newline) to fd 2; a closed or full fd 2 is ignored."""
    try:  # noqa: SIM105 - contextlib.suppress costs an import and a frame here
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass
