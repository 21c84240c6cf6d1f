"""The demo's plumbing: the parties, HTTP as a frontend and a browser do it, waiting
for webhooks to land, balance tables checked against SPEC 6, and the outgoing events
received on loopback and verified. The scenario is ``demo.py``."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payments_api.auth import mint_dev_token
from payments_api.settings import Settings

CURRENCY = "usd"
STEP_TIMEOUT_SECONDS = 30.0


class DemoFailed(Exception):
    """A step did not end as the specification says."""


@dataclass(frozen=True)
class Party:
    name: str
    user_id: str
    roles: list[str]


class EventReceiver:
    """The platform's backend, as far as the demo needs one: an HTTP server on a
    loopback port that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/events"

        async def receive(request: Request) -> Response:
            self.received.append((await request.body(), dict(request.headers)))
            return Response(status_code=204)

        app = Starlette(routes=[Route("/events", receive, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # The socket already listens: deliveries wait in its backlog until it serves.
        self.task = asyncio.create_task(self.server.serve(sockets=[self.listener]))

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
        self.listener.close()


def major(minor: int) -> str:
    return f"{Decimal(minor).scaleb(-2):.2f}"


def first_id(html: str, prefix: str) -> str:
    """The newest object id with ``prefix`` on the sandbox admin page."""
    marker = f"<code>{prefix}"
    start = html.find(marker)
    if start < 0:
        raise DemoFailed(f"no {prefix} object on the sandbox admin page")
    start += len("<code>")
    return html[start : html.index("</code>", start)]


class DemoClient:
    """One demo run's connection to the service, its parties and what it has seen."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
        out: Callable[[str], object] = sys.stdout.write,
        timeout: float = STEP_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.settings = settings
        self.settle = settle or (lambda: asyncio.sleep(0.25))
        self.out = out
        self.timeout = timeout
        self.clock = clock  # the step deadlines' clock (a test moves it by hand)
        run = uuid.uuid4().hex[:6]
        self.customer = Party("customer", f"demo-customer-{run}", ["customer"])
        self.payee = Party("payee", f"demo-payee-{run}", ["payee"])
        self.admin = Party("admin", f"demo-admin-{run}", ["admin"])
        self.backend = Party("backend", f"demo-backend-{run}", ["service"])
        self.failures: list[str] = []
        self.receiver: EventReceiver | None = None
        self.verifier: Webhook | None = None
        self.endpoint_id: str | None = None
        self.seen_events: set[str] = set()
        self.printed = 0

    # -------------------------------------------------------------- plumbing

    def _headers(self, party: Party, *, write: bool = False) -> dict[str, str]:
        token = mint_dev_token(self.settings, sub=party.user_id, roles=party.roles)
        headers = {"Authorization": f"Bearer {token}"}
        if write:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return headers

    async def _post(self, party: Party, path: str, body: Any = None) -> dict[str, Any]:
        response = await self.client.post(
            path, json=body or {}, headers=self._headers(party, write=True)
        )
        if response.status_code >= 400:
            raise DemoFailed(f"POST {path} -> {response.status_code}: {response.text[:300]}")
        result: dict[str, Any] = response.json()
        return result

    async def _get(self, party: Party, path: str) -> dict[str, Any]:
        response = await self.client.get(path, headers=self._headers(party))
        if response.status_code >= 400:
            raise DemoFailed(f"GET {path} -> {response.status_code}: {response.text[:300]}")
        result: dict[str, Any] = response.json()
        return result

    async def _click(self, url: str, **form: str) -> httpx.Response:
        """Press a button on a sandbox page (a form POST, as the browser sends it)."""
        parts = urlsplit(url)
        response = await self.client.post(parts.path, data=form)
        if response.status_code not in (200, 302, 303):
            raise DemoFailed(f"sandbox page {parts.path} -> {response.status_code}")
        return response

    async def _until(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        """Wait for the webhooks to do their work (Stripe's confirmation, not ours)."""
        deadline = self.clock() + self.timeout
        while True:
            await self.settle()
            if await check():
                return
            if self.clock() > deadline:
                raise DemoFailed(f"timed out waiting for {what}")

    async def balances(self, party: Party) -> dict[str, Any]:
        body = await self._get(party, "/api/v1/me/balance")
        for entry in body["balances"]:
            if entry["currency"] == CURRENCY:
                return {**entry, "frozen": body["frozen"]}
        return {
            "available": 0,
            "escrow": 0,
            "withdrawing": 0,
            "refunding": 0,
            "pending": 0,
            "frozen": body["frozen"],
        }

    async def _available_is(self, party: Party, amount: int) -> bool:
        return int((await self.balances(party))["available"]) == amount

    async def table(self, step: str, expected: dict[str, dict[str, int]]) -> None:
        """Print both wallets; record every difference from the expected amounts."""
        self.out(f"\n== {step}\n")
        self.out(
            f"{'wallet':<10}{'available':>12}{'escrow':>12}{'withdrawing':>13}"
            f"{'refunding':>11}  check\n"
        )
        for party in (self.customer, self.payee):
            balance = await self.balances(party)
            want = expected.get(party.name, {})
            wrong = [
                f"{field} {major(int(balance[field]))} != {major(amount)}"
                for field, amount in want.items()
                if int(balance[field]) != amount
            ]
            self.failures += [f"{step}: {party.name} {w}" for w in wrong]
            self.out(
                f"{party.name:<10}{major(int(balance['available'])):>12}"
                f"{major(int(balance['escrow'])):>12}"
                f"{major(int(balance['withdrawing'])):>13}"
                f"{major(int(balance.get('refunding', 0))):>11}  "
                f"{'ok' if not wrong else 'WRONG: ' + '; '.join(wrong)}\n"
            )

    # -------------------------------------------------------------- outgoing events

    async def _listen_for_events(self) -> None:
        """Start the receiver and register it for every event type."""
        self.receiver = EventReceiver()
        self.receiver.start()
        endpoint = await self._post(
            self.admin,
            "/api/v1/admin/webhook-endpoints",
            {"url": self.receiver.url, "description": "payments-api demo"},
        )
        self.endpoint_id = endpoint["id"]
        self.verifier = Webhook(endpoint["secret"])
        self.out(f"events go to {self.receiver.url} (endpoint {endpoint['id']})\n")

    async def _stop_listening(self) -> None:
        if self.endpoint_id is not None:
            # Nobody listens there after the demo: stop sending, keep the history.
            await self._post(
                self.admin, f"/api/v1/admin/webhook-endpoints/{self.endpoint_id}/disable"
            )
        if self.receiver is not None:
            await self.receiver.stop()

    def _ours(self) -> list[dict[str, Any]]:
        """Verified events about the demo's users, in the order they arrived."""
        if self.receiver is None or self.verifier is None:
            raise DemoFailed("the event receiver is not running")
        parties = {self.customer.user_id, self.payee.user_id}
        events: list[dict[str, Any]] = []
        for body, headers in self.receiver.received:
            try:
                event: dict[str, Any] = self.verifier.verify(body, headers)
            except WebhookVerificationError as exc:
                raise DemoFailed(f"an event failed verification: {exc}") from exc
            if parties.intersection(event["user_ids"]):
                events.append(event)
        return events

    async def events(self, step: str, *expected: str) -> None:
        """Wait for ``expected`` (types, in order) after the ones already printed, then
        print them; a duplicate or anything else is a failure."""

        async def arrived() -> bool:
            return len(self._ours()) >= self.printed + len(expected)

        await self._until(f"the events of '{step}'", arrived)
        new = self._print_new_events(step)
        types = [event["type"] for event in new]
        if types != list(expected):
            self.failures.append(f"{step}: events {types} != {list(expected)}")
        self.printed += len(new)

    def _print_new_events(self, step: str) -> list[dict[str, Any]]:
        """Print the events that arrived since the last step (a duplicate delivery is a
        failure) and return them; the caller counts them printed."""
        new = self._ours()[self.printed :]
        for event in new:
            duplicate = event["id"] in self.seen_events
            self.seen_events.add(event["id"])
            obj = event["data"]["object"]
            self.out(
                f"  event {event['id']:<8} {event['type']:<24} {obj.get('id', '')}"
                f"{'  DUPLICATE' if duplicate else '  verified'}\n"
            )
            if duplicate:
                self.failures.append(f"{step}: event {event['id']} delivered twice")
        return new

    # -------------------------------------------------------------- the scenario

    async def _stripe(self, method: str, path: str, **form: str) -> dict[str, Any]:
        """The sandbox's Stripe API, as the platform's Stripe dashboard would use it."""
        response = await self.client.request(
            method,
            f"/sandbox/stripe/v1{path}",
            data=form or None,
            headers={"Authorization": "Bearer sk_test_demo"},
        )
        if response.status_code >= 400:
            raise DemoFailed(f"sandbox Stripe {method} {path} -> {response.status_code}")
        result: dict[str, Any] = response.json()
        return result

    async def events_including(self, step: str, *required: str) -> None:
        """Print the events that arrived since the last step; ``required`` must be among
        them (subscription events race Stripe's own order, so only presence is checked)."""

        async def arrived() -> bool:
            types = [e["type"] for e in self._ours()[self.printed :]]
            return all(types.count(t) >= required.count(t) for t in set(required))

        await self._until(f"the events of '{step}'", arrived)
        new = self._print_new_events(step)
        self.printed += len(new)
