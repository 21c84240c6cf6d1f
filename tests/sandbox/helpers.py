"""Driving the sandbox like a user: the public API, the hosted pages, and the webhook
deliveries that follow."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import respx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.settings import Settings
from payments_sandbox.events import deliver_event
from payments_sandbox.models import SandboxEvent
from payments_sandbox.repository import DELIVER_JOB
from tests.helpers import auth

BASE_URL = "http://testserver"
WEBHOOK_PATHS = ("/api/v1/webhooks/stripe", "/api/v1/webhooks/stripe/connect")
SUCCESS_URL = "http://localhost:3000/wallet?paid={CHECKOUT_SESSION_ID}"
CANCEL_URL = "http://localhost:3000/wallet"


def path_of(url: str) -> str:
    """The local path (and query) of a URL the API returned (e.g. a checkout URL)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE_URL, url
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def run_delivery_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    at: datetime | None = None,
) -> int:
    """Run the queued ``sandbox.events.deliver`` jobs due at ``at`` (default: the
    database's now), oldest first, as the sandbox's pgqueuer consumer does (taking each
    job off the queue); returns how many ran. In a test, the database's ``now()`` is the
    test transaction's start: a retry queued with a delay is due ``delay`` after it."""
    async with sessionmaker.begin() as session:
        if at is None:
            at = await session.scalar(text("SELECT now()"))
        rows = await session.execute(
            text(
                "DELETE FROM pgqueuer WHERE id IN (SELECT id FROM pgqueuer"
                " WHERE entrypoint = :entrypoint AND execute_after <= :at)"
                " RETURNING id, payload"
            ),
            {"entrypoint": DELIVER_JOB, "at": at},
        )
        jobs = sorted(rows.all())
    async with httpx.AsyncClient() as client:
        for _, payload in jobs:
            await deliver_event(sessionmaker, settings, payload.decode(), client=client, now=at)
    return len(jobs)


async def database_now(sessionmaker: async_sessionmaker[AsyncSession]) -> datetime:
    async with sessionmaker() as session:
        now: datetime = await session.scalar(text("SELECT now()"))
        return now


@dataclass
class Sandbox:
    client: httpx.AsyncClient
    mock: respx.MockRouter
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    webhook_outage: int = 0
    """The next this many webhook deliveries are answered 503 (the service is down)."""

    # -- the public API -----------------------------------------------------------
    async def api(
        self,
        method: str,
        path: str,
        user: str,
        roles: list[str],
        *,
        json: Any = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = auth(user, roles)
        if method == "POST":
            headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return await self.client.request(method, path, json=json, headers=headers, params=params)

    # -- the hosted pages ------------------------------------------------------------
    async def click(self, path: str, **form: str) -> httpx.Response:
        """Submit a page's form (what the browser does when a button is pressed)."""
        return await self.client.post(path, data=form)

    # -- Stripe's side -----------------------------------------------------------------
    async def deliver(self) -> list[str]:
        """Deliver every due sandbox event to the webhook routes (runs the queued delivery
        jobs, as the sandbox's job consumer does); returns the types delivered in this
        call, in order."""
        before = len(self.webhook_calls())
        for _ in range(50):
            if not await run_delivery_jobs(self.sessionmaker, self.settings):
                break
        calls = self.webhook_calls()[before:]
        return [call["type"] for call in calls]

    def webhook_calls(self) -> list[dict[str, Any]]:
        import json as _json

        return [
            _json.loads(call.request.content)
            for call in self.mock.calls
            if call.request.url.path in WEBHOOK_PATHS
        ]

    def stripe_calls(self, path_prefix: str = "/sandbox/stripe/v1/") -> list[httpx.Request]:
        return [
            call.request
            for call in self.mock.calls
            if call.request.url.path.startswith(path_prefix)
        ]

    async def undelivered(self) -> list[str]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(SandboxEvent.type).where(SandboxEvent.status != "delivered")
            )
            return list(rows)

    # -- the ledger --------------------------------------------------------------------
    async def balance(self, user: str, kind: AccountKind = AccountKind.available) -> int:
        async with self.sessionmaker() as session:
            return await LedgerService(session).balance_of(AccountRef.user(user, kind, "usd"))

    # -- whole steps, as a user would click them ---------------------------------------
    async def start_checkout(self, user: str, amount: int, roles: list[str] | None = None) -> Any:
        response = await self.api(
            "POST",
            "/api/v1/checkout/sessions",
            user,
            roles or ["customer"],
            json={
                "purpose": "topup",
                "amount": amount,
                "currency": "usd",
                "success_url": SUCCESS_URL,
                "cancel_url": CANCEL_URL,
            },
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def top_up(self, user: str, amount: int, roles: list[str] | None = None) -> Any:
        """Checkout top-up paid on the hosted page, webhooks delivered."""
        checkout = await self.start_checkout(user, amount, roles)
        paid = await self.click(path_of(checkout["url"]), action="pay")
        assert paid.status_code == 303, paid.text
        await self.deliver()
        return checkout

    async def onboard(self, payee: str, outcome: str = "enabled", *, deliver: bool = True) -> str:
        """The payee opens the onboarding link and submits the form; returns the account."""
        response = await self.api(
            "POST", "/api/v1/me/payout-account/onboarding-link", payee, ["payee"]
        )
        assert response.status_code in (200, 201), response.text
        url = response.json()["url"]
        opened = await self.client.get(path_of(url))
        assert opened.status_code == 200, opened.text
        link = urlsplit(url).query.split("link=", 1)[1]
        account: str = urlsplit(url).path.rsplit("/", 1)[1]
        done = await self.click(f"/sandbox/onboarding/{account}", link=link, outcome=outcome)
        assert done.status_code == 303, done.text
        if deliver:
            await self.deliver()
        return account

    async def stripe(
        self,
        method: str,
        path: str,
        data: dict[str, str] | None = None,
        *,
        key: str | None = None,
        account: str | None = None,
        api_key: str = "sk_test_sandbox_offline",
    ) -> httpx.Response:
        """A raw call to the sandbox's Stripe API, as curl would make it."""
        headers = {"Authorization": f"Bearer {api_key}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if account is not None:
            headers["Stripe-Account"] = account
        if method == "GET":
            return await self.client.get(f"/sandbox/stripe{path}", params=data, headers=headers)
        return await self.client.request(
            method, f"/sandbox/stripe{path}", data=data or {}, headers=headers
        )

    async def stripe_object(self, object_id: str) -> dict[str, Any]:
        from payments_sandbox.models import SandboxObject

        async with self.sessionmaker() as session:
            row = await session.get(SandboxObject, object_id, populate_existing=True)
            assert row is not None, object_id
            return dict(row.body)

    async def objects_of(self, type_: str) -> list[dict[str, Any]]:
        from payments_sandbox.models import SandboxObject

        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(SandboxObject)
                .where(SandboxObject.type == type_)
                .order_by(SandboxObject.seq)
                .execution_options(populate_existing=True)
            )
            return [dict(row.body) for row in rows]
