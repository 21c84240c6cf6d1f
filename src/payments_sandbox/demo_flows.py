"""The demo's later chapters: saved cards (off-session top-ups, authentication,
an escrow paid by authorization and captured in part) and a subscription renewed by the
test clock, failing and recovered."""

from __future__ import annotations

from typing import Any

from payments_sandbox.demo_kit import CURRENCY, DemoClient, DemoFailed, Party, major


class DemoFlows(DemoClient):
    """Cards and subscriptions, run by ``Demo`` after the marketplace scenario."""

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
            f"escrow {escrow['id']}: authorized {major(escrow['authorized_amount'])} "
            "at the card (shown as the balance's authorized, never available)\n"
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

    async def _subscription_status(self, party: Party, subscription_id: str) -> dict[str, Any]:
        return await self._get(party, f"/api/v1/me/subscriptions/{subscription_id}")

    async def _report(self, step: str, party: Party, subscription_id: str, want: int) -> None:
        sub = await self._subscription_status(party, subscription_id)
        available = int((await self.balances(party))["available"])
        ok = available == want
        if not ok:
            self.failures.append(f"{step}: wallet {major(available)} != {major(want)}")
        self.out(
            f"\n== {step}\nsubscription {sub['id']}: status {sub['status']}, entitled "
            f"{str(sub['entitled']).lower()}; wallet available {major(available)}  "
            f"{'ok' if ok else 'WRONG'}\n"
        )

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
