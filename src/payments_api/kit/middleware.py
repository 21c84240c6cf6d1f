"""The outermost ASGI layer: request ids, body limits, content types, last-resort 500s.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it can stop a request before the
body is read and still answer problem+json when the app below raises.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payments_api.kit.text import holds_unstorable_text, unstorable
from payments_api.logs import LeanLogger
from payments_api.problems import PROBLEM_MEDIA_TYPE, InvalidCharacters, PayloadTooLarge

log = structlog.get_logger("payments_api.http")
# The line every request writes: the same line, with less work per call (logs.py).
request_log = LeanLogger("payments_api.http")

# A caller's X-Request-ID is kept when it matches (openapi.py declares the same pattern);
# any other value is replaced by a generated id.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{8,128}$"
_REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _new_request_id() -> str:
    """32 hex digits, as ``uuid.uuid4().hex`` gave: an id to find a request's log lines
    by, not a secret, so from the process's pseudo-random generator (reseeded in every
    forked worker) rather than the system's entropy source, a system call per request
    (2 to 4% of a read's CPU: bench/cpu.py)."""
    return f"{random.getrandbits(128):032x}"


REQUESTS = Counter(
    "payments_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = Histogram(
    "payments_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
# The metrics' children by (method, route, status), looked up once each: ``labels()``
# validates and locks on every call. As many entries as the metrics have series.
_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _record(method: str, route: str, status: int, elapsed: float) -> None:
    series = _SERIES.get((method, route, status))
    if series is None:
        series = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
        _SERIES[(method, route, status)] = series
    series[0].inc()
    series[1].observe(elapsed)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        problem_base_url: str,
        non_json_prefixes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.problem_base_url = problem_base_url.rstrip("/")
        self.non_json_prefixes = tuple(non_json_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_RE.match(incoming) else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        method: str = scope["method"]
        path: str = scope["path"]
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        # Set when the streamed body passes the limit. The app below may catch the
        # resulting error itself (FastAPI turns body errors into 400), so the response
        # it then sends is replaced here by the 413 problem.
        body_too_large = False
        # Set when the body holds what PostgreSQL cannot store; like an oversized body,
        # whatever the app answers after the error is replaced by the problem.
        bad_characters = False
        replaced = False

        async def send_raw(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def send_with_id(message: Message) -> None:
            nonlocal replaced
            if body_too_large or bad_characters:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await (too_large() if body_too_large else invalid_characters())
                return
            await send_raw(message)

        async def problem(status: int, code: str, title: str, detail: str) -> None:
            body = json.dumps(
                {
                    "type": f"{self.problem_base_url}/{code}",
                    "title": title,
                    "status": status,
                    "detail": detail,
                    "instance": path,
                    "code": code,
                    "message": detail,
                    "request_id": request_id,
                }
            ).encode()
            await send_raw(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_raw({"type": "http.response.body", "body": body})

        async def invalid_characters() -> None:
            await problem(
                InvalidCharacters.status,
                InvalidCharacters.code,
                InvalidCharacters.title,
                "NUL characters and lone UTF-16 surrogates cannot be stored.",
            )

        async def too_large() -> None:
            await problem(
                413,
                "payload_too_large",
                "Request body too large",
                f"The body exceeds {self.max_body_bytes} bytes.",
            )

        try:
            rejection = self._reject_early(scope, method, path)
            if rejection is not None:
                await problem(*rejection)
                return
            received = 0
            chunks: list[bytes] = []
            suspect = False
            content_type = _header(scope, b"content-type")

            async def limited_receive() -> Message:
                nonlocal received, body_too_large, suspect, bad_characters
                message = await receive()
                if message["type"] == "http.request":
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > self.max_body_bytes:
                        body_too_large = True
                        raise PayloadTooLarge
                    # The tail of the previous chunk too: a pattern split across two.
                    tail = chunks[-1][-6:] if chunks else b""
                    suspect = suspect or _SUSPECT.search(tail + chunk) is not None
                    chunks.append(chunk)
                    # Decided before the route sees the whole body, so nothing is stored.
                    if (
                        suspect
                        and not message.get("more_body", False)
                        and _body_is_unstorable(b"".join(chunks), content_type)
                    ):
                        bad_characters = True
                        raise InvalidCharacters
                return message

            await self.app(scope, limited_receive, send_with_id)
            if (body_too_large or bad_characters) and not replaced:
                replaced = True
                await (too_large() if body_too_large else invalid_characters())
        except PayloadTooLarge:
            if not status_holder["started"]:
                replaced = True
                await too_large()
        except InvalidCharacters:
            if not status_holder["started"] and not replaced:
                replaced = True
                await invalid_characters()
        except Exception:
            # The last resort: log the traceback with the request id, tell the client
            # nothing about internals.
            log.exception("unhandled error", method=method, path=path)
            if not status_holder["started"]:
                await problem(
                    500,
                    "internal_error",
                    "Internal server error",
                    "An unexpected error occurred. Quote the request id when reporting it.",
                )
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            status = int(status_holder["status"])
            _record(method, route, status, elapsed)
            request_log.info(
                "request",
                method=method,
                path=path,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )

    def _reject_early(self, scope: Scope, method: str, path: str) -> tuple[Any, ...] | None:
        query = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in query or b"\x00" in query:
            return (
                InvalidCharacters.status,
                InvalidCharacters.code,
                InvalidCharacters.title,
                "NUL characters are not allowed in the path or the query.",
            )
        length = _header(scope, b"content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return (400, "bad_request", "Bad request", "Invalid Content-Length header.")
            if int(length) > self.max_body_bytes:
                return (
                    413,
                    "payload_too_large",
                    "Request body too large",
                    f"The body exceeds {self.max_body_bytes} bytes.",
                )
        has_body = (length is not None and int(length) > 0) or _header(
            scope, b"transfer-encoding"
        ) is not None
        if (
            method in _BODY_METHODS
            and has_body
            and not path.startswith(self.non_json_prefixes)
            and not _is_json(_header(scope, b"content-type"))
        ):
            return (
                415,
                "unsupported_media_type",
                "Unsupported media type",
                "Send the request body as application/json.",
            )
        return None


# Candidates, looked for in the raw bytes of each body chunk (cheap): a raw NUL, a
# percent-encoded one (forms), an escaped one or an escaped surrogate (JSON). Only a body
# with a candidate is decoded to tell a real problem (a lone surrogate, a NUL) from a
# harmless match (a surrogate pair: an emoji; an escaped backslash before "u0000").
_SUSPECT = re.compile(rb"\x00|%00|\\u0000|\\u[dD][89a-fA-F]", re.IGNORECASE)


def _body_is_unstorable(body: bytes, content_type: str | None) -> bool:
    """Whether a suspect body really holds a NUL or a lone surrogate."""
    if _is_json(content_type):
        try:
            return holds_unstorable_text(json.loads(body))
        except ValueError:
            return b"\x00" in body  # not JSON: the route answers malformed_json
    if b"\x00" in body:
        return True
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(body.decode("utf-8", "surrogatepass"), keep_blank_values=True)
    except UnicodeDecodeError:
        return False
    return any(unstorable(k) or unstorable(v) for k, v in pairs)


def _route_template(scope: Scope) -> str:
    # Label metrics by route template, not raw path, to keep cardinality bounded.
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else "unmatched"


def quiet_loggers(names: Iterable[str]) -> None:
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
