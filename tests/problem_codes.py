"""Every problem the service answers during the suite must be declared by its route.

A pytest plugin (tests/conftest.py loads it). It watches every response that leaves
the outermost middleware in any test, and after each test compares the problem codes
seen with what the OpenAPI document declares for that operation and status
(``x-problem-codes``, built by openapi.py from the routes' ``problem_responses`` and
the registry in problems.py). A route that answers a code it does not declare fails
the test that made it answer, naming the route, the status and the code.

``PAYMENTS_RECORD_PROBLEM_CODES=<file>`` appends every observation to a JSON-lines file
instead of failing (used to find what is missing in one run of the suite).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from payments_api.kit import middleware as kit_middleware
from payments_api.problems import PROBLEM_MEDIA_TYPE


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    code: str


_SEEN: list[Seen] = []
_original_call = kit_middleware.RequestContextMiddleware.__call__


async def _watching_call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await _original_call(self, scope, receive, send)
        return
    start: dict[str, Any] = {}
    body = bytearray()

    async def watch(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body" and len(body) < 65536:
            body.extend(message.get("body", b""))
        await send(message)

    await _original_call(self, scope, receive, watch)
    headers = {k.lower(): v for k, v in start.get("headers", [])}
    if not headers.get(b"content-type", b"").startswith(PROBLEM_MEDIA_TYPE.encode()):
        return
    try:
        code = json.loads(bytes(body))["code"]
    except (ValueError, KeyError, TypeError):
        code = "<no code>"
    _SEEN.append(Seen(scope["method"], scope["path"], int(start["status"]), str(code)))


@cache
def _spec() -> dict[str, Any]:
    from payments_api.main import create_app
    from payments_api.settings import Settings

    spec: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return spec


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in _spec()["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        out.append((re.compile(f"^{pattern}$"), template))
    # Literal segments win over parameters (/orders/summary before /orders/{id}).
    out.sort(key=lambda item: item[1].count("{"))
    return out


def undeclared(seen: Seen) -> str | None:
    """Why ``seen`` is not declared, or None when it is."""
    for pattern, template in _templates():
        if not pattern.match(seen.path):
            continue
        operation = _spec()["paths"][template].get(seen.method.lower())
        if operation is None:
            # Not an operation of this path: 405, which the router answers for any path.
            return (
                None
                if seen.status == 405 and seen.code == "method_not_allowed"
                else (f"{seen.method} {template} is not an operation")
            )
        response = operation["responses"].get(str(seen.status))
        if response is None:
            return f"{seen.method} {template} does not declare status {seen.status}"
        declared = response.get("x-problem-codes", [])
        if seen.code not in declared:
            return (
                f"{seen.method} {template} {seen.status} answered code {seen.code!r}; "
                f"declared: {declared}"
            )
        return None
    # Not in the contract: an unknown path (the router's 404/405) or a route a test
    # mounted on its own app; nothing is declared for either.
    return None


def pytest_configure(config: pytest.Config) -> None:
    kit_middleware.RequestContextMiddleware.__call__ = _watching_call  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _declared_problem_codes_only(request: pytest.FixtureRequest) -> Iterator[None]:
    _SEEN.clear()
    yield
    seen, _SEEN[:] = list(_SEEN), []
    record = os.environ.get("PAYMENTS_RECORD_PROBLEM_CODES")
    if record:
        with open(record, "a") as out:
            for item in seen:
                out.write(json.dumps({**item.__dict__, "test": request.node.nodeid}) + "\n")
        return
    if request.node.get_closest_marker("undeclared_problem_codes"):
        return
    problems = sorted({reason for item in seen if (reason := undeclared(item))})
    if problems:
        pytest.fail("undeclared problem codes:\n" + "\n".join(problems), pytrace=False)
