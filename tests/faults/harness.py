"""The fault matrix's harness: what a scenario gets (``Harness``) and what it is
(``Scenario``), shared by tests/faults/test_stripe_faults.py and the scenario modules
next to it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.state import AppState
from tests.factories import create_user
from tests.faults.fake_stripe import FakeStripe
from tests.faults.fault_injector import LEAK_MARKER, FaultKind
from tests.helpers import auth

TRANSIENT = {
    FaultKind.timeout,
    FaultKind.connection_error,
    FaultKind.server_error,
    FaultKind.rate_limited,
}


@dataclass
class Harness:
    client: httpx.AsyncClient
    session: AsyncSession
    fake: FakeStripe
    state: AppState
    user: str = field(default_factory=lambda: f"flt_{uuid.uuid4().hex[:10]}")
    key: str = field(default_factory=lambda: f"idem-{uuid.uuid4().hex}")
    memo: dict[str, Any] = field(default_factory=dict)

    def headers(self, *roles: str) -> dict[str, str]:
        return {**auth(self.user, list(roles)), "Idempotency-Key": self.key}

    async def scalar(self, sql: str, **params: Any) -> Any:
        return await self.session.scalar(text(sql), params)


def assert_problem(response: httpx.Response, fault: FaultKind) -> None:
    """A failed try is a clear problem and never echoes Stripe."""
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    if fault in TRANSIENT:
        assert response.status_code == 503, response.text
        assert body["code"] == "payment_provider_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    else:
        assert response.status_code == 502, response.text
        assert body["code"] == "payment_provider_error"
    assert LEAK_MARKER not in response.text
    assert "Invalid integer" not in response.text


class Scenario:
    """How a client reaches a Stripe call. ``attempt`` makes one try (the same
    Idempotency-Key every time) and asserts its outcome: failed with ``fault``, or
    succeeded when ``fault`` is None."""

    async def prepare(self, t: Harness) -> None:
        await create_user(t.session, id=t.user, roles=["customer", "payee"])

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        raise NotImplementedError

    async def settled(self, t: Harness) -> None:
        """The state after the successful try."""

    def definite(self, fault: FaultKind) -> bool:
        """Whether the route treats ``fault`` as a final answer (no retry succeeds)."""
        return False
