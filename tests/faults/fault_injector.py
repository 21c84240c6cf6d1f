"""Faults in front of the sandbox: a thin respx layer between the app's gateway and the
sandbox's Stripe API (issue #17).

The sandbox is the stateful Stripe (objects, Stripe's ``Idempotency-Key`` replay and
``idempotency_error``); this layer only records what was sent and, for a planned
(method, path) and the next matching try, fails it: a timeout, a connection error, or
500 / 429 / 400 with Stripe's error shape, before the request reaches the sandbox or
after it took effect there (the answer is lost).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

import httpx

SANDBOX_API = "/sandbox/stripe"
# A secret-looking string inside Stripe's error messages: it must never reach a client.
LEAK_MARKER = "sk_test_secret_leak"


class FaultKind(StrEnum):
    timeout = "timeout"
    connection_error = "connection_error"
    server_error = "500"
    rate_limited = "429"
    invalid_request = "400"


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    kind: FaultKind
    after_effect: bool = False
    """Forward first, then fail: Stripe did it, the answer was lost."""


@dataclass
class Recorded:
    method: str
    path: str
    """Stripe's path (``/v1/...``), without the sandbox's mount point."""
    form: dict[str, Any]
    idempotency_key: str | None
    stripe_account: str | None
    outcome: str = "ok"
    """ok, or the FaultKind value the try failed with."""


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", raw_key)
        node: Any = result
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    parsed: dict[str, Any] = _listify(result)
    return parsed


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(key.isdigit() for key in node):
            return [_listify(node[key]) for key in sorted(node, key=int)]
        return {key: _listify(value) for key, value in node.items()}
    return node


def stripe_error(status: int, error_type: str, code: str, message: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "type": error_type,
                "code": code,
                "message": message,
                "request_log_url": "https://dashboard.stripe.com/test/logs/req_fault",
            }
        },
        headers={"Request-Id": f"req_{uuid.uuid4().hex[:14]}"},
    )


FAULT_RESPONSES = {
    FaultKind.server_error: lambda: stripe_error(
        500, "api_error", "api_error", f"An unknown error occurred ({LEAK_MARKER})."
    ),
    FaultKind.rate_limited: lambda: stripe_error(
        429, "invalid_request_error", "rate_limit", "Too many requests made to the API."
    ),
    FaultKind.invalid_request: lambda: stripe_error(
        400,
        "invalid_request_error",
        "parameter_invalid_integer",
        f"Invalid integer: abc. Key {LEAK_MARKER}.",
    ),
}

Forward = Callable[[httpx.Request], Awaitable[httpx.Response]]


@dataclass
class FaultInjector:
    """Wraps ``forward`` (the sandbox's request handler): mount it as the respx side
    effect of the route that reaches the sandbox."""

    forward: Forward
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def fail(self, method: str, path: str, kind: FaultKind, *, after_effect: bool = False) -> None:
        """The next request matching ``method`` and the Stripe path regex ``path`` fails
        once with ``kind``."""
        self.faults.append(Fault(method.upper(), re.compile(path), kind, after_effect))

    def calls(self, method: str, path: str) -> list[Recorded]:
        pattern = re.compile(path)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.startswith(f"{SANDBOX_API}/"):
            return await self.forward(request)  # webhooks, pages: not Stripe's API
        path = request.url.path.removeprefix(SANDBOX_API)
        if request.method == "GET":
            form: dict[str, Any] = dict(request.url.params)
        else:
            form = parse_form(request.content)
        record = Recorded(
            request.method,
            path,
            form,
            request.headers.get("Idempotency-Key"),
            request.headers.get("Stripe-Account"),
        )
        self.requests.append(record)
        fault = next(
            (f for f in self.faults if f.method == request.method and f.path.fullmatch(path)),
            None,
        )
        if fault is None:
            return await self.forward(request)
        self.faults.remove(fault)
        record.outcome = fault.kind.value
        if fault.after_effect:
            await self.forward(request)  # it took effect; the answer never arrives
        if fault.kind is FaultKind.timeout:
            raise httpx.ReadTimeout("injected: timed out", request=request)
        if fault.kind is FaultKind.connection_error:
            raise httpx.ConnectError("injected: connection refused", request=request)
        return FAULT_RESPONSES[fault.kind]()
