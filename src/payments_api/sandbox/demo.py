"""The marketplace demonstration: a scripted scenario against a running sandbox service.

A customer tops up 200.00 on the hosted checkout page, offers a job of 100.00 to a payee,
the payee onboards and accepts, the job is completed, the payee withdraws 50.00 (paid out
from the sandbox admin page), an admin refunds 20.00 of the top-up, the customer tips the
payee 10.00 (a direct payment) and an admin refunds the tip, the platform's backend
debits 5.00 of usage from the wallet, the customer cashes 25.00 out to the card, and a
dispute on the top-up is opened and won. Then cards: the customer saves a card and is
topped up off-session with it, saves a card whose bank always wants authentication (its
off-session top-up waits for the customer, who finishes it through the link), and pays a
job by authorization only, captured in part when the payee accepts. Then the customer
subscribes to a monthly plan that credits the wallet, the sandbox's test clock renews it
once, the card starts failing (past_due) and the customer recovers by paying the open
invoice. Every step goes over HTTP exactly as a frontend (and a browser on the sandbox
pages) would; the money moves only when the sandbox's webhooks reach the service. After
each step the balances are printed as a table; the run fails (exit code 1) if any
balance differs from what SPEC 6 says it must be.

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
        await self._cards(back)
        await self._subscription(customer, base)

    async def _save_card(self, number: str, *, authenticate: bool) -> dict[str, Any]:
        """The customer saves a test card on the sandbox's SetupIntent page (what the
        app does with Stripe's SDK); the card is listed once Stripe's event arrives."""
        customer = self.customer
        before = len((await self._get(customer, "/api/v1/me/payment-methods"))["data"])
        setup = await self._post(customer, "/api/v1/me/payment-methods/setup")
        base = str(self.client.base_url).rstrip("/")
        page = f"{base}/sandbox/setup_intents/{setup['setup_intent_id']}"
        self.out(f"save-a-card page: {page}\n")
        await self._click(page, action=number)
        if authenticate:
            await self._click(f"{page}/authenticate", action="pass")

        async def listed() -> bool:
            cards = (await self._get(customer, "/api/v1/me/payment-methods"))["data"]
            return len(cards) > before

        await self._until("the saved card", listed)
        cards = (await self._get(customer, "/api/v1/me/payment-methods"))["data"]
        card: dict[str, Any] = next(c for c in cards if c["last4"] == number[-4:])
        self.out(f"saved card {card['id']}: {card['brand']} ...{card['last4']}\n")
        return card

    async def _cards(self, back: str) -> None:
        """Saved cards, off-session top-ups (one the bank wants authenticated, finished
        on the sandbox's page) and an escrow paid by authorization, then captured."""
        customer, payee = self.customer, self.payee

        # 9. The customer saves a card; it becomes the default for off-session top-ups.
        await self._save_card("4242424242424242", authenticate=False)
        await self.events("card saved", "payment_method.saved")

        # 10. An off-session top-up of 30.00 on the default card (customer away).
        topup = await self._post(
            customer,
            "/api/v1/topups",
            {"amount": 3_000, "currency": CURRENCY, "off_session": True},
        )
        self.out(f"off-session top-up: {topup['status']}\n")
        await self._until("the off-session top-up", lambda: self._available_is(customer, 7_500))
        await self.table("off-session top-up of 30.00", {"customer": {"available": 7_500}})
        await self.events("off-session top-up", "topup.succeeded")

        # 11. A card whose bank always wants the customer: off-session it needs
        # authentication, and the customer finishes it through the link.
        strict = await self._save_card("4000002760003184", authenticate=True)
        await self.events("second card saved", "payment_method.saved")
        pending = await self._post(
            customer,
            "/api/v1/topups",
            {
                "amount": 2_000,
                "currency": CURRENCY,
                "off_session": True,
                "payment_method": strict["id"],
            },
        )
        action = pending.get("next_action") or {}
        if pending["status"] != "requires_action" or not action.get("url"):
            raise DemoFailed(f"the top-up is {pending['status']}, expected requires_action")
        self.out(f"needs the customer: finish at {action['url']}\n")
        await self.table(
            "off-session top-up needs authentication (nothing credited)",
            {"customer": {"available": 7_500}},
        )
        await self.events("authentication required", "topup.requires_action")
        await self._click(action["url"], action="3ds")
        await self._click(f"{action['url']}/authenticate", action="pass")
        await self._until("the authenticated top-up", lambda: self._available_is(customer, 9_500))
        await self.table(
            "customer authenticates: 20.00 credited", {"customer": {"available": 9_500}}
        )
        await self.events("authenticated top-up", "topup.succeeded")

        # 12. A job of 40.00 paid by authorization: the card holds 42.00, nothing moves.
        checkout = await self._post(
            customer,
            "/api/v1/checkout/sessions",
            {
                "purpose": "escrow",
                "capture_method": "manual",
                "payee_id": payee.user_id,
                "amount": 4_000,
                "currency": CURRENCY,
                "reference": "demo-job-authorized",
                "success_url": back,
                "cancel_url": back,
            },
        )
        self.out(f"checkout page (authorize only): {checkout['url']}\n")
        await self._click(checkout["url"], action="pay")

        async def escrow_in(status: str) -> bool:
            page = await self._get(customer, "/api/v1/escrows?limit=1")
            return bool(page["data"]) and page["data"][0]["status"] == status

        await self._until("the authorization", lambda: escrow_in("authorized"))
        escrow = (await self._get(customer, "/api/v1/escrows?limit=1"))["data"][0]
        self.out(
            f"escrow {escrow['id']}: authorized {_major(escrow['authorized_amount'])} "
            "at the card (not in any balance)\n"
        )
        await self.table(
            "job of 40.00 paid by authorization (nothing captured)",
            {"customer": {"available": 9_500, "escrow": 0}},
        )
        await self.events("authorized", "escrow.authorized")

        # 13. The payee accepts for 30.00: 31.50 captured, the rest released at the card.
        await self._post(
            payee, f"/api/v1/escrows/{escrow['id']}/accept", {"amount_to_capture": 3_150}
        )
        await self._until("the capture", lambda: escrow_in("accepted"))
        await self.table(
            "payee accepts, 31.50 captured (30.00 job + 1.50 fee)",
            {"customer": {"available": 9_500, "escrow": 3_000}},
        )
        await self.events("captured", "escrow.funded", "escrow.accepted", "order.paid")

    # -------------------------------------------------------------- subscription

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

    async def _subscription_status(self, party: Party, subscription_id: str) -> dict[str, Any]:
        return await self._get(party, f"/api/v1/me/subscriptions/{subscription_id}")

    async def _report(self, step: str, party: Party, subscription_id: str, want: int) -> None:
        sub = await self._subscription_status(party, subscription_id)
        available = int((await self.balances(party))["available"])
        ok = available == want
        if not ok:
            self.failures.append(f"{step}: wallet {_major(available)} != {_major(want)}")
        self.out(
            f"\n== {step}\nsubscription {sub['id']}: status {sub['status']}, entitled "
            f"{str(sub['entitled']).lower()}; wallet available {_major(available)}  "
            f"{'ok' if ok else 'WRONG'}\n"
        )

    async def events_including(self, step: str, *required: str) -> None:
        """Print the events that arrived since the last step; ``required`` must be among
        them (subscription events race Stripe's own order, so only presence is checked)."""

        async def arrived() -> bool:
            types = [e["type"] for e in self._ours()[self.printed :]]
            return all(types.count(t) >= required.count(t) for t in set(required))

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
        self.printed += len(new)

    async def _advance_past_period(self, stripe_subscription: str) -> None:
        sub = await self._stripe("GET", f"/subscriptions/{stripe_subscription}")
        end = int(sub["items"]["data"][0]["current_period_end"])
        response = await self.client.post(
            f"/sandbox/test-clocks/{sub['test_clock']}/advance", data={"frozen_time": str(end + 60)}
        )
        if response.status_code not in (200, 303):
            raise DemoFailed(f"advancing the test clock -> {response.status_code}")

    async def _subscription(self, customer: Party, base: str) -> None:
        """14-17. A monthly plan with 3.00 of wallet credit: subscribe, renew, a card that
        starts failing, recovery. Stripe's test clock stands in for the months."""
        run = customer.user_id.rsplit("-", 1)[-1]
        product = await self._stripe(
            "POST", "/products", name="Demo plan", **{"metadata[family]": f"demo-{run}"}
        )
        price = await self._stripe(
            "POST",
            "/prices",
            product=product["id"],
            unit_amount="900",
            currency=CURRENCY,
            **{"recurring[interval]": "month", "metadata[monthly_credit]": "300"},
        )

        async def plan_listed() -> bool:
            plans = await self._get(customer, "/api/v1/plans")
            return any(p["price"] == price["id"] for p in plans["data"])

        await self._until("the plan to sync from Stripe's events", plan_listed)
        wallet = int((await self.balances(customer))["available"])

        # 14. Subscribe with a card that works: the first invoice is paid, 3.00 credited.
        created = await self._post(
            customer,
            "/api/v1/me/subscriptions",
            {"price": price["id"], "payment_method": "pm_card_visa"},
        )
        sid, stripe_sub = created["id"], created["stripe_subscription_id"]
        wallet += 300

        async def state_is(status: str, available: int) -> bool:
            sub = await self._subscription_status(customer, sid)
            return sub["status"] == status and await self._available_is(customer, available)

        await self._until("the first invoice", lambda: state_is("active", wallet))
        await self._report("customer subscribes (9.00/month, 3.00 credit)", customer, sid, wallet)
        await self.events_including("subscribed", "subscription.created", "invoice.paid")

        # 15. A month passes: the renewal is paid and credited once more.
        await self._advance_past_period(stripe_sub)
        wallet += 300
        await self._until("the renewal", lambda: state_is("active", wallet))
        await self._report("a month later: renewal paid", customer, sid, wallet)
        await self.events_including("renewed", "invoice.paid")

        # 16. The card starts failing (the issuer declines): the next renewal fails.
        await self._stripe(
            "POST",
            f"/subscriptions/{stripe_sub}",
            default_payment_method="pm_card_chargeCustomerFail",
        )
        await self._advance_past_period(stripe_sub)
        await self._until("the failed renewal", lambda: state_is("past_due", wallet))
        await self._report("next month: the card is declined (past_due)", customer, sid, wallet)
        await self.events_including("renewal failed", "invoice.payment_failed")

        # 17. The customer pays the open invoice with a working card: active again.
        sub = await self._stripe("GET", f"/subscriptions/{stripe_sub}")
        open_invoice = await self._stripe("GET", f"/invoices/{sub['latest_invoice']}")
        secret = str(open_invoice["confirmation_secret"]["client_secret"])
        intent = secret.split("_secret_", 1)[0]
        self.out(f"invoice payment page: {base}/sandbox/payment_intents/{intent}\n")
        await self._click(f"{base}/sandbox/payment_intents/{intent}", action="pay")
        wallet += 300
        await self._until("the recovery", lambda: state_is("active", wallet))
        await self._report("customer pays the open invoice: recovered", customer, sid, wallet)
        await self.events_including("recovered", "invoice.paid")


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
