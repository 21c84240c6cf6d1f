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
from urllib.parse import urlsplit

import httpx

from payments_api.settings import Settings, get_settings
from payments_sandbox.demo_flows import DemoFlows
from payments_sandbox.demo_kit import CURRENCY, DemoFailed, first_id, major

__all__ = ["Demo", "DemoFailed", "main", "run"]


class Demo(DemoFlows):
    """The whole scenario (SPEC 6), step by step, with its balance tables and events."""

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
        topup_charge = first_id((await self.client.get("/sandbox/")).text, "ch_")

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
            f"withdrawal {withdrawal['id']}: available after {major(after)}, expected in "
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
        dispute = first_id((await self.client.get("/sandbox/")).text, "dp_")
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


async def run(base_url: str, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await Demo(client, settings).run()


def main(base_url: str | None = None) -> int:
    """Entry point of ``payments-api demo``; returns the process exit code."""
    settings = get_settings()
    return asyncio.run(run(base_url or settings.public_base_url, settings))
