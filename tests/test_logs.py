"""The request line's lean logger writes exactly the line structlog would."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from payments_api.logs import LeanLogger, configure_logging, utc_timestamp


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


def _only_the_service_handler(monkeypatch: pytest.MonkeyPatch) -> logging.Handler:
    """The root logger with configure_logging's handler alone, without the capture
    handlers pytest adds around each test."""
    root = logging.getLogger()
    [handler] = [h for h in root.handlers if type(h) is logging.StreamHandler]
    monkeypatch.setattr(root, "handlers", [handler])
    return handler


def test_the_lean_line_builds_no_log_record_for_plain_stream_handlers(
    logged: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[logging.LogRecord] = []
    make_record = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(self, *args, **kwargs)
        built.append(record)
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    _only_the_service_handler(monkeypatch)
    LeanLogger("payments_api.http").info("request", status=200)
    assert [line["status"] for line in _lines(logged)] == [200]
    assert built == []


def test_a_filtered_handler_gets_the_lean_line_as_a_record(
    logged: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record)
        return True

    handler = _only_the_service_handler(monkeypatch)
    handler.addFilter(keep)
    LeanLogger("payments_api.http").info("request", status=201)
    assert [line["status"] for line in _lines(logged)] == [201]
    assert [record.name for record in seen] == ["payments_api.http"]


def test_utc_timestamp_is_timestampers_iso_form(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fraction, none, one that rounds down to none, one that rounds up to a second.
    instants = (1_764_956_459.447236, 1_764_956_460.0, 1_764_956_460.0000004, 1_764_956_460.9999996)
    for now in instants:
        monkeypatch.setattr(time, "time", lambda now=now: now)
        expected = datetime.fromtimestamp(now, tz=UTC).isoformat().replace("+00:00", "Z")
        assert utc_timestamp() == expected


class _Tagged:
    def __structlog__(self) -> str:
        return "tagged"


def test_values_json_cannot_hold_render_as_structlogs_renderer_does(
    logged: io.StringIO,
) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-12345678")
    fields: dict[str, Any] = {"id": uuid.UUID(int=7), "tag": _Tagged(), "path": '/é"x'}
    structlog.get_logger("payments_api.http").info("request", **fields)
    LeanLogger("payments_api.http").info("request", **fields)
    expected, lean = _lines(logged)
    expected.pop("timestamp"), lean.pop("timestamp")
    assert lean == expected
    assert (lean["id"], lean["tag"]) == (repr(uuid.UUID(int=7)), "tagged")


def test_an_exception_line_is_still_redacted(logged: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("payments_api.http").exception("failed")
    [line] = _lines(logged)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].rstrip().endswith("ValueError: boom")
    assert "exc_info" not in line
