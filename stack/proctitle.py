"""Process titles that say what runs: ``loglog serve --port 8000``, not ``python -m stack.cli``.

The runbooks tell the on-call to look for ``pgrep -af '^loglog serve'``; that holds however
the command was started (the console script, ``python -m stack.cli`` under ``loglog up``),
because the entry point sets the title first thing. Passwords in URLs on the command line
(``--broker amqp://user:pass@…``) are redacted in the title, which every user of the
machine can read.

Celery sets its own title (``[celeryd: …]``) when ``setproctitle`` is importable, which
would hide ``loglog worker``; its documented switch ``NOSETPS`` turns that off, and must be
set before Celery is imported.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from loglog.redact import redact


def title(argv: Sequence[str]) -> str:
    """The title for ``loglog`` run with ``argv`` (the arguments after the program)."""
    return " ".join(["loglog", *(shlex.quote(redact(arg)) for arg in argv)])


def set_title(argv: Sequence[str]) -> bool:
    """Set this process's title from ``argv``; False where ``setproctitle`` is missing."""
    os.environ.setdefault("NOSETPS", "1")  # before any import of celery
    try:
        import setproctitle
    except ImportError:  # an optional nicety: the command works without it
        return False
    setproctitle.setproctitle(title(argv))
    return True
