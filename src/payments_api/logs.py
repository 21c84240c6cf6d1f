"""Structured logs: one JSON object per line, with the request id bound per request.

structlog renders both our own log calls and the standard library's (uvicorn,
sqlalchemy), so every line has the same shape. Nothing secret is ever passed to a
logger: tokens, keys and card data stay out of log calls by construction.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog
from sqlalchemy.exc import StatementError

# Exceptions from these modules are database drivers' (and SQLAlchemy's adapters of
# them): their messages quote bound values ("invalid input for query argument $1:
# 'the user's reference'"), so only their type, SQLSTATE and statement are logged.
_DRIVER_MODULES = ("asyncpg", "psycopg", "sqlalchemy.dialects")
_WITHHELD = "message withheld: database errors may quote the values of a statement"


def _safe_message(exc: BaseException) -> str:
    if isinstance(exc, StatementError):
        return f"[SQL: {exc.statement}] ({_WITHHELD})"
    if type(exc).__module__.startswith(_DRIVER_MODULES):
        sqlstate = getattr(exc, "sqlstate", None)
        return f"({_WITHHELD}{f'; SQLSTATE {sqlstate}' if sqlstate else ''})"
    return str(exc)


def format_exception(exc: BaseException) -> str:
    """A traceback like Python's, with every database error's message replaced by its
    statement and SQLSTATE: user data bound to a statement never reaches the logs.
    (SQLAlchemy's ``hide_parameters`` alone is not enough: asyncpg repeats the value.)"""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = (
                current.__cause__,
                "The above exception was the direct cause of the following exception:",
            )
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = (
                current.__context__,
                "During handling of the above exception, another exception occurred:",
            )
        else:
            current = None
    parts: list[str] = []
    for index, (item, _) in enumerate(reversed(chain)):
        if index:
            parts.append(f"\n{chain[len(chain) - index][1]}\n\n")
        name = type(item).__qualname__
        module = type(item).__module__
        qualified = name if module == "builtins" else f"{module}.{name}"
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        parts.append(f"{qualified}: {_safe_message(item)}\n")
    return "".join(parts)


def redact_exc_info(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor in place of ``format_exc_info``: see :func:`format_exception`."""
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(exc, BaseException):
        event_dict["exception"] = format_exception(exc)
    return event_dict


_second: list[Any] = [None, ""]


def utc_timestamp() -> str:
    """Now as ``TimeStamper(fmt="iso", utc=True)`` writes it (``...T17:40:59.447236Z``),
    the date and time formatted once a second rather than for every line."""
    now = time.time()
    second = int(now)
    micros = round((now - second) * 1_000_000)  # rounded as datetime.fromtimestamp does
    if micros == 1_000_000:
        second, micros = second + 1, 0
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{micros:06d}Z" if micros else f"{_second[1]}Z"


def _stamp(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The ``timestamp`` of every line (``utc_timestamp``)."""
    event_dict["timestamp"] = utc_timestamp()
    return event_dict


def _shared_processors() -> list[structlog.types.Processor]:
    """What every line gets, whether structlog or the standard library logged it."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _stamp,
    ]


_SHARED = _shared_processors()


class LineFormatter(structlog.stdlib.ProcessorFormatter):
    """``ProcessorFormatter`` with a shorter way for the lines structlog wrapped: their
    event is rendered by the same processors, without the copy of the whole record and
    the standard ``Formatter`` pass around it, which only returned the rendered string
    unchanged (``%(message)s``, no exception or stack text: structlog's processors
    render those). Other libraries' records take ``ProcessorFormatter``'s own way."""

    json_encoder: json.JSONEncoder | None = None
    """Set when the processors end with structlog's ``JSONRenderer`` at its defaults
    (``configure_logging``): the encoder it would build for every line, built once."""

    def format(self, record: logging.LogRecord) -> str:
        logger = getattr(record, "_logger", None)
        method_name = getattr(record, "_name", None)
        if logger is None or not isinstance(method_name, str) or not isinstance(record.msg, dict):
            return super().format(record)
        return self.render(logger, method_name, record.msg, record)

    def render(
        self,
        logger: Any,
        method_name: str,
        event_dict: dict[str, Any],
        record: logging.LogRecord | None = None,
    ) -> str:
        """The line of a structlog event (its dict as the shared processors left it)."""
        if self.json_encoder is not None and "exc_info" not in event_dict:
            # What the processors below would do with it: nothing to remove, nothing to
            # redact, then json.dumps, which builds an encoder on every call.
            return self.json_encoder.encode(event_dict)
        event: Any = {**event_dict, "_record": record, "_from_structlog": True}
        for processor in self.processors:
            event = processor(logger, method_name, event)
        return str(event)


class LeanLogger:
    """Writes the line structlog's ``get_logger(name).info(event, **fields)`` would, with
    less work per call: for the line written on every request (bench/readpath.py). The
    same processors build the event, the same handler renders it; only structlog's
    bound-logger machinery and the standard library's caller lookup (a walk up the
    stack for a file name and line that no line shows) are skipped."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def info(self, event: str, **fields: Any) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        # The shared processors' work (_SHARED), in their order, without their calls.
        event_dict: Any = structlog.contextvars.merge_contextvars(
            logger, "info", {**fields, "event": event}
        )
        event_dict["level"] = "info"
        event_dict["logger"] = logger.name
        event_dict["timestamp"] = utc_timestamp()
        handlers = _plain_handlers(logger)
        if handlers is None:
            self._handle(event_dict)
            return
        # What StreamHandler.handle would do with the record, without building one: a
        # LogRecord and the standard library's dispatch were a third of the line's
        # cost, the line an eighth of a balance read's CPU (py-spy over bench/cpu.py).
        for handler in handlers:
            line = handler.formatter.render(logger, "info", event_dict)
            handler.acquire()
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except Exception:
                handler.handleError(self._record(event_dict))
            finally:
                handler.release()

    def _handle(self, event_dict: Any) -> None:
        self._logger.handle(self._record(event_dict))

    def _record(self, event_dict: Any) -> logging.LogRecord:
        logger = self._logger
        return logger.makeRecord(
            logger.name,
            logging.INFO,
            "(unknown file)",
            0,
            event_dict,
            (),
            None,
            extra={"_logger": logger, "_name": "info"},
        )


class _PlainHandler(logging.StreamHandler):  # type: ignore[type-arg]
    formatter: LineFormatter


def _plain_handlers(logger: logging.Logger) -> list[_PlainHandler] | None:
    """The handlers an INFO record of ``logger`` would reach, when each is a plain
    ``StreamHandler`` (``FileHandler`` included) rendering with ``LineFormatter`` and no
    filter stands in the way; None otherwise (a test's capture handler, a filter), and
    the record then takes the standard library's way."""
    handlers: list[_PlainHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if handler.level > logging.INFO:
                continue
            if (
                type(handler) not in (logging.StreamHandler, logging.FileHandler)
                or handler.filters
                or getattr(handler, "stream", None) is None  # a FileHandler's first line
                or not isinstance(handler.formatter, LineFormatter)
            ):
                return None
            handlers.append(handler)  # type: ignore[arg-type]
        if not current.propagate:
            break
        current = current.parent
    return handlers or None


def _json_fallback(value: Any) -> Any:
    """What ``JSONRenderer``'s default does with a value JSON has no type for."""
    structlog_form = getattr(value, "__structlog__", None)
    return structlog_form() if callable(structlog_form) else repr(value)


def configure_logging(level: str = "INFO", *, json_output: bool = True) -> None:
    shared = _SHARED
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = LineFormatter(
        # ExtraAdder: fields passed as `extra=` by standard-library loggers become keys.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_exc_info,
            renderer,
        ],
    )
    if json_output:
        formatter.json_encoder = json.JSONEncoder(default=_json_fallback)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our own access log carries the request id; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # stripe-python logs whole response bodies at DEBUG, and those carry PaymentIntent
    # client secrets: never let it below INFO, whatever the service's level.
    logging.getLogger("stripe").setLevel(max(logging.INFO, root.level))
