"""stdlib logging and loguru flow into loglog."""

from __future__ import annotations

import logging

import loglog
from loglog.testing import capture


def test_stdlib_records_keep_level_name_message_extras_and_traceback():
    """install_stdlib() routes logging.* into loglog with extra= fields and exc_info."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        with capture() as records:
            loglog.install_stdlib(level="info")
            std = logging.getLogger("urllib3.connectionpool")
            std.debug("filtered by the stdlib level")
            std.warning("retrying %s (%d)", "/push", 2, extra={"attempt": 2})
            try:
                raise ConnectionError("refused")
            except ConnectionError:
                std.exception("gave up")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert [r.message for r in records] == ["retrying /push (2)", "gave up"]
    assert records[0].logger == "urllib3.connectionpool"
    assert records[0].levelname == "warning" and records[0].fields == {"attempt": 2}
    assert "ConnectionError: refused" in records[1].exc_text


def test_loguru_messages_arrive_with_extra_fields_and_exceptions():
    """logger.add(loglog.loguru_sink) forwards loguru records, bound extras included."""
    from loguru import logger

    with capture() as records:
        handler_id = logger.add(loglog.loguru_sink, level="DEBUG")
        try:
            logger.bind(stream="cam1").info("from loguru {}", 42)
            try:
                _ = 1 / 0
            except ZeroDivisionError:
                logger.exception("divided")
        finally:
            logger.remove(handler_id)
    assert records[0].message == "from loguru 42"
    assert records[0].fields == {"stream": "cam1"}
    assert records[1].levelname == "error" and "ZeroDivisionError" in records[1].exc_text
