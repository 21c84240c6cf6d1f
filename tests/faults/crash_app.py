"""The real application for the crash tests, able to die (SIGKILL: no cleanup, no
exit hooks, connections dropped) at a point a request names in ``X-Test-Crash``:

- ``before-commit``: right after the route's ledger post, inside its transaction;
- ``after-commit``: when the response starts, i.e. after the request's transaction
  committed and before the client receives a byte.

Served by ``uvicorn --factory tests.faults.crash_app:app_factory`` in a child process.
"""

from __future__ import annotations

import os
import signal
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payments_api.ledger.service import LedgerService
from payments_api.main import create_app

CRASH_HEADER = b"x-test-crash"
_crash_point: ContextVar[str | None] = ContextVar("crash_point", default=None)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashOnRequest:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        point = dict(scope.get("headers", ())).get(CRASH_HEADER)
        if scope["type"] != "http" or point is None:
            await self.app(scope, receive, send)
            return
        _crash_point.set(point.decode())

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and _crash_point.get() == "after-commit":
                _die()
            await send(message)

        await self.app(scope, receive, sending)


def app_factory() -> ASGIApp:
    original = LedgerService.post

    async def post(self: LedgerService, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        if _crash_point.get() == "before-commit":
            _die()
        return result

    LedgerService.post = post  # type: ignore[method-assign]
    return CrashOnRequest(create_app())
