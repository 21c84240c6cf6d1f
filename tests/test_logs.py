"""The request line's lean logger writes exactly the line structlog would."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from payments_api.logs import LeanLogger, configure_logging


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The service's logging as create_app configures it, written to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    try:
        configure_logging("INFO")
        captured = io.StringIO()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(captured)
        structlog.contextvars.clear_contextvars()
        yield captured
    finally:
        structlog.contextvars.clear_contextvars()
        root.handlers[:], root.level = saved
        structlog.configure(**saved_structlog)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_lean_line_equals_structlogs(logged: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-12345678", user_id="u-1")
    fields: dict[str, Any] = {"method": "GET", "path": "/x", "status": 200, "duration_ms": 1.5}
    structlog.get_logger("payments_api.http").info("request", **fields)
    LeanLogger("payments_api.http").info("request", **fields)
    expected, lean = _lines(logged)
    assert lean.pop("timestamp").endswith("Z")
    expected.pop("timestamp")
    assert list(lean.items()) == list(expected.items())  # same keys, same order
    assert lean["request_id"] == "req-12345678"
    assert lean["level"] == "info"


def test_lean_logger_honours_the_level(logged: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    LeanLogger("payments_api.http").info("request", status=200)
    assert logged.getvalue() == ""


def test_standard_library_lines_keep_their_shape(logged: io.StringIO) -> None:
    logging.getLogger("payments_api.jobs").warning("job %s late", "j-1", extra={"job": "j-1"})
    [line] = _lines(logged)
    assert line["event"] == "job j-1 late"
    assert (line["level"], line["logger"], line["job"]) == ("warning", "payments_api.jobs", "j-1")
