"""The marketplace demonstration: a scripted scenario against a running sandbox service.

A customer tops up 200.00 on the hosted checkout page, offers a job of 100.00 to a payee,
the payee onboards and accepts, the job is completed, the payee withdraws 50.00 (paid out
from the sandbox admin page), an admin refunds 20.00 of the top-up, the customer tips the
payee 10.00 (a direct payment) and an admin refunds the tip, the platform's backend
debits 5.00 of usage from the wallet, the customer cashes 25.00 out to the card, and a
dispute on the top-up is opened and won. Every step goes over HTTP exactly as a frontend (and a
browser on the sandbox pages) would; the money moves only when the sandbox's webhooks
reach the service. After each step the balances are printed as a table; the run fails
(exit code 1) if any balance differs from what SPEC 6 says it must be.

The demo also plays the platform's backend: it starts a receiver on loopback, registers
it as a webhook endpoint, and after each step prints the outgoing events it received,
each verified with the endpoint's secret (Standard Webhooks), in order. A step whose
events do not arrive, arrive twice or fail verification fails the run too.

Run it with ``payments-api demo`` (the CLI calls :func:`main`) against the service
started by the README's first command.
"""

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
from payments_api.settings import Settings, get_settings

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


def _major(minor: int) -> str:
    return f"{Decimal(minor).scaleb(-2):.2f}"


class Demo:
    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
        out: Callable[[str], object] = sys.stdout.write,
        timeout: float = STEP_TIMEOUT_SECONDS,
    ) -> None:
        self.client = client
        self.settings = settings
        self.settle = settle or (lambda: asyncio.sleep(0.25))
        self.out = out
        self.timeout = timeout
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
        deadline = time.monotonic() + self.timeout
        while True:
            await self.settle()
            if await check():
                return
            if time.monotonic() > deadline:
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
                f"{field} {_major(int(balance[field]))} != {_major(amount)}"
                for field, amount in want.items()
                if int(balance[field]) != amount
            ]
            self.failures += [f"{step}: {party.name} {w}" for w in wrong]
            self.out(
                f"{party.name:<10}{_major(int(balance['available'])):>12}"
                f"{_major(int(balance['escrow'])):>12}"
                f"{_major(int(balance['withdrawing'])):>13}"
                f"{_major(int(balance.get('refunding', 0))):>11}  "
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
        types = [event["type"] for event in new]
        if types != list(expected):
            self.failures.append(f"{step}: events {types} != {list(expected)}")
        self.printed += len(new)

    # -------------------------------------------------------------- the scenario

    async def run(self) -> int:
        sandbox = await self.client.get("/sandbox/")
        if sandbox.status_code != 200 or "SANDBOX" not in sandbox.text:
            self.out("The service at this URL is not in sandbox mode; the demo needs it.\n")
            return 2
        try:
            await self._listen_for_events()
            await self._scenario()
        except DemoFailed as exc:
            self.out(f"\nFAILED: {exc}\n")
            return 1
        finally:
            await self._stop_listening()
        if self.failures:
            self.out("\nFAILED: balances differ from the specification:\n")
            for failure in self.failures:
                self.out(f"  - {failure}\n")
            return 1
        self.out("\nAll balances are as the specification says.\n")
        return 0

    async def _scenario(self) -> None:
        customer, payee, admin = self.customer, self.payee, self.admin
        # Where Checkout sends the browser back: the service's own sandbox page (its own
        # origin is always an allowed redirect origin); the demo never follows it.
        base = str(self.client.base_url).rstrip("/")
        back = f"{base}/sandbox/"

        # 1. The customer tops up 200.00 with Checkout and presses Pay.
        checkout = await self._post(
            customer,
            "/api/v1/checkout/sessions",
            {
                "purpose": "topup",
                "amount": 20_000,
                "currency": CURRENCY,
                "success_url": back,
                "cancel_url": back,
            },
        )
        self.out(f"checkout page: {checkout['url']}\n")
        await self._click(checkout["url"], action="pay")
        await self._until("the top-up", lambda: self._available_is(customer, 20_000))
        await self.table("customer tops up 200.00", {"customer": {"available": 20_000}})
        await self.events("top-up", "topup.succeeded")
        # The top-up's card charge (the only one yet): disputed at the end.
        topup_charge = _first_id((await self.client.get("/sandbox/")).text, "ch_")

        # 2. A job of 100.00 for the payee: price plus the 5% platform fee held.
        escrow = await self._post(
            customer,
            "/api/v1/escrows",
            {
                "payee_id": payee.user_id,
                "amount": 10_000,
                "currency": CURRENCY,
                "reference": "demo-job",
            },
        )
        await self.table(
            "customer offers a job of 100.00",
            {"customer": {"available": 9_500, "escrow": 10_500}},
        )
        await self.events("job offered", "escrow.funded")

        # 3. The payee onboards on the (sandbox) Express onboarding page.
        link = await self._post(payee, "/api/v1/me/payout-account/onboarding-link")
        token = urlsplit(link["url"]).query.split("link=", 1)[1]
        self.out(f"onboarding page: {link['url']}\n")
        await self._click(link["url"], link=token, outcome="enabled")

        async def enabled() -> bool:
            account = await self._get(payee, "/api/v1/me/payout-account")
            return bool(account["payout_account"]["status"] == "enabled")

        await self._until("the payout account to be enabled", enabled)
        self.out("payee payout account: enabled (told by account.updated)\n")
        await self.events("onboarding", "payout_account.updated")

        # 4. The payee accepts: the platform fee is taken.
        await self._post(payee, f"/api/v1/escrows/{escrow['id']}/accept")
        await self.table("payee accepts", {"customer": {"available": 9_500, "escrow": 10_000}})
        await self.events("accept", "escrow.accepted")

        # 5. The customer completes the job: 20% service fee, 80.00 to the payee.
        await self._post(customer, f"/api/v1/escrows/{escrow['id']}/complete")
        await self.table(
            "job completed",
            {"customer": {"available": 9_500, "escrow": 0}, "payee": {"available": 8_000}},
        )
        await self.events("complete", "escrow.completed")

        # 6. The payee withdraws 50.00: a transfer, then a payout paid by "the bank".
        withdrawal = await self._post(
            payee, "/api/v1/me/payouts", {"amount": 5_000, "currency": CURRENCY}
        )
        if withdrawal["status"] != "transferred":
            raise DemoFailed(f"withdrawal is {withdrawal['status']}, expected transferred")
        after = int(withdrawal["available_after"])
        if after != 3_000:
            raise DemoFailed(f"withdrawal answered available_after {after}")
        self.out(
            f"withdrawal {withdrawal['id']}: available after {_major(after)}, expected in "
            f"the bank on {withdrawal['expected_arrival_date']}\n"
        )

        async def payout_listed() -> bool:
            page = await self._get(payee, "/api/v1/me/payouts")
            return any(p["amount"] == 5_000 for p in page["data"])

        await self._until("the payout", payout_listed)
        payout = next(
            p
            for p in (await self._get(payee, "/api/v1/me/payouts"))["data"]
            if p["amount"] == 5_000
        )
        await self._click(f"{base}/sandbox/admin/payouts/{payout['id']}", outcome="paid")

        async def payout_paid() -> bool:
            page = await self._get(payee, "/api/v1/me/payouts")
            return any(p["id"] == payout["id"] and p["status"] == "paid" for p in page["data"])

        await self._until("the payout to be paid", payout_paid)
        await self.table(
            "payee withdraws 50.00 (payout paid)",
            {"payee": {"available": 3_000, "withdrawing": 0}},
        )
        await self.events("withdrawal", "withdrawal.created", "withdrawal.paid")

        # 7. An admin refunds 20.00 of the customer's top-up.
        await self._post(
            admin, "/api/v1/admin/refunds", {"order_id": checkout["order_id"], "amount": 2_000}
        )
        await self._until("the refund", lambda: self._available_is(customer, 7_500))
        await self.table("admin refunds 20.00 of the top-up", {"customer": {"available": 7_500}})
        await self.events("refund", "refund.succeeded", "order.refunded")

        # 8. The customer tips the payee 10.00 (a destination charge to the payee's
        #    connected account); an admin refunds the tip. No wallet moves: the payee's
        #    share comes back from the connected account, the platform's fee from its fees.
        project = await self._post(
            payee, "/api/v1/me/projects", {"name": "Demo show", "currency": CURRENCY}
        )
        tip = await self._post(
            customer,
            "/api/v1/checkout/sessions",
            {
                "purpose": "direct",
                "kind": "tip",
                "payee_id": payee.user_id,
                "project_id": project["id"],
                "amount": 1_000,
                "currency": CURRENCY,
                "success_url": back,
                "cancel_url": back,
            },
        )
        await self._click(tip["url"], action="pay")

        async def tip_paid() -> bool:
            order = await self._get(customer, f"/api/v1/orders/{tip['order_id']}")
            return bool(order["status"] == "succeeded")

        await self._until("the tip", tip_paid)
        await self.table("customer tips the payee 10.00 (direct payment)", {})
        await self.events("tip", "order.paid")
        tip_refund = await self._post(
            admin, "/api/v1/admin/refunds", {"order_id": tip["order_id"], "amount": 1_000}
        )

        async def tip_refunded() -> bool:
            order = await self._get(customer, f"/api/v1/orders/{tip['order_id']}")
            return bool(order["status"] == "refunded")

        await self._until("the tip's refund", tip_refunded)
        self.out(f"tip refund {tip_refund['id']}: {tip_refund['status']}\n")
        await self.table(
            "admin refunds the tip (transfer reversed, fee refunded)",
            {"customer": {"available": 7_500}, "payee": {"available": 3_000}},
        )
        await self.events("tip refund", "refund.succeeded", "order.refunded")

        # 9. The platform's backend (role service) debits 5.00 of usage.
        await self._post(
            self.backend,
            f"/api/v1/wallets/{customer.user_id}/debits",
            {"amount": 500, "currency": CURRENCY, "description": "demo usage"},
        )
        await self.table("backend debits 5.00 of usage", {"customer": {"available": 7_000}})
        await self.events("debit", "wallet.debited")

        # 10. The customer cashes 25.00 out to the card the top-up came from: held in
        #     refunding until Stripe confirms the refund (at once, in the sandbox).
        cashout = await self._post(
            customer, "/api/v1/me/wallet/refunds", {"amount": 2_500, "currency": CURRENCY}
        )

        async def cashed_out() -> bool:
            got = await self._get(customer, f"/api/v1/me/wallet/refunds/{cashout['id']}")
            return bool(got["status"] == "succeeded")

        await self._until("the cash-out", cashed_out)
        await self.table(
            "customer cashes 25.00 out to the card",
            {"customer": {"available": 4_500, "refunding": 0}},
        )
        await self.events(
            "cash-out",
            "wallet_refund.created",
            "refund.succeeded",
            "order.refunded",
            "wallet_refund.succeeded",
        )

        # 11. The card holder disputes the top-up; the platform wins it.
        charge = topup_charge
        await self._click(f"{base}/sandbox/admin/charges/{charge}/dispute", reason="fraudulent")

        async def frozen() -> bool:
            return bool((await self.balances(customer))["frozen"])

        await self._until("the dispute to freeze the wallet", frozen)
        await self.table("card holder disputes the top-up (wallet frozen)", {})
        await self.events("dispute opened", "dispute.created")
        dispute = _first_id((await self.client.get("/sandbox/")).text, "dp_")
        await self._click(f"{base}/sandbox/admin/disputes/{dispute}/close", outcome="won")
        await self._until("the dispute to be won", lambda: self._available_is(customer, 4_500))
        await self.table(
            "dispute won: money back",
            {
                "customer": {"available": 4_500, "escrow": 0, "withdrawing": 0, "refunding": 0},
                "payee": {"available": 3_000, "escrow": 0, "withdrawing": 0},
            },
        )
        await self.events("dispute won", "dispute.closed")


def _first_id(html: str, prefix: str) -> str:
    """The newest object id with ``prefix`` on the sandbox admin page."""
    marker = f"<code>{prefix}"
    start = html.find(marker)
    if start < 0:
        raise DemoFailed(f"no {prefix} object on the sandbox admin page")
    start += len("<code>")
    return html[start : html.index("</code>", start)]


async def run(base_url: str, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await Demo(client, settings).run()


def main(base_url: str | None = None) -> int:
    """Entry point of ``payments-api demo``; returns the process exit code."""
    settings = get_settings()
    return asyncio.run(run(base_url or settings.public_base_url, settings))
