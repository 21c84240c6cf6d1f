"""The sandbox's Stripe Billing: products, recurring prices, subscriptions, invoices
and test clocks (a small, honest subset).

* A subscription is paid at once with its ``default_payment_method`` (a test card; none
  means a card that works): ``active`` with a paid invoice, or ``trialing`` with a $0
  invoice under ``trial_from_plan``. A card that needs authentication or is declined
  leaves it ``incomplete`` with an open invoice whose ``confirmation_secret`` is a
  PaymentIntent's: paying that PaymentIntent on its sandbox page pays the invoice and
  activates the subscription.
* Each customer with a subscription gets a test clock (``customer.test_clock``).
  ``POST /sandbox/test-clocks/{id}/advance`` moves it to ``frozen_time`` and runs every
  renewal that falls due on its subscriptions, in order: a paid invoice (or, with a
  declined card, a failed one and ``past_due``), a cancel at period end, trial ends.
* Plan changes swap the price with no proration invoice; previews compute Stripe's
  prorations (unused time credited, remaining time charged) by the second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments_sandbox import objects
from payments_sandbox.errors import invalid, missing_param, no_such
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params

if TYPE_CHECKING:
    from payments_sandbox.service import SandboxStripe

INTERVAL_SECONDS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}


class SandboxBilling:
    def __init__(self, stripe: SandboxStripe) -> None:
        self.stripe = stripe
        self.objects = stripe.objects

    # ------------------------------------------------------------ products and prices

    async def create_product(self, p: Params) -> dict[str, Any]:
        body = objects.template("product")
        features = p.raw("marketing_features")
        body.update(
            id=p.text("id") or objects.new_id("prod", 14),
            name=p.required_text("name"),
            description=p.text("description"),
            active=p.boolean("active", default=True),
            metadata=p.metadata(),
            marketing_features=[
                {"name": str(f.get("name"))}
                for f in (features if isinstance(features, list) else [])
                if isinstance(f, dict) and f.get("name")
            ],
            created=objects.now(),
            updated=objects.now(),
            default_price=None,
        )
        await self.objects.add("product", body)
        await self.stripe.emit("product.created", body)
        return body

    async def create_price(self, p: Params) -> dict[str, Any]:
        product = await self.stripe.load(p.required_text("product"), "product", param="product")
        interval = p.text("recurring.interval")
        if interval is not None and interval not in INTERVAL_SECONDS:
            raise invalid("Invalid recurring[interval].", param="recurring[interval]")
        body = objects.template("price")
        body.update(
            id=objects.new_id("price", 24),
            product=product.id,
            active=p.boolean("active", default=True),
            currency=p.currency(),
            unit_amount=p.required_integer("unit_amount", minimum=0),
            lookup_key=p.text("lookup_key"),
            nickname=p.text("nickname"),
            metadata=p.metadata(),
            created=objects.now(),
            type="recurring" if interval else "one_time",
            recurring={
                "interval": interval,
                "interval_count": p.integer("recurring.interval_count", minimum=1) or 1,
                "meter": None,
                "trial_period_days": p.integer("recurring.trial_period_days", minimum=1),
                "usage_type": "licensed",
            }
            if interval
            else None,
        )
        body["unit_amount_decimal"] = str(body["unit_amount"])
        await self.objects.add("price", body)
        await self.stripe.emit("price.created", body)
        return body

    async def update_price(self, price_id: str, p: Params) -> dict[str, Any]:
        row = await self.stripe.load(price_id, "price")
        body = row.body
        previous = {"active": body["active"]}
        body["active"] = p.boolean("active", default=bool(body["active"]))
        if p.has("metadata"):
            body["metadata"] = {**body.get("metadata", {}), **p.metadata()}
        await self.objects.save(row, body)
        await self.stripe.emit("price.updated", body, previous=previous)
        return body

    # ------------------------------------------------------------ subscriptions

    async def _clock_of(self, customer: SandboxObject) -> str:
        clock_id = customer.body.get("test_clock")
        if isinstance(clock_id, str):
            return clock_id
        clock = {
            "id": objects.new_id("clock", 24),
            "object": "test_helpers.test_clock",
            "created": objects.now(),
            "deletes_after": objects.now() + 30 * 86400,
            "frozen_time": objects.now(),
            "livemode": False,
            "name": f"Clock of {customer.id}",
            "status": "ready",
        }
        await self.objects.add("test_helpers.test_clock", clock)
        body = customer.body
        body["test_clock"] = clock["id"]
        await self.objects.save(customer, body)
        return str(clock["id"])

    async def create_subscription(self, p: Params) -> dict[str, Any]:
        from payments_sandbox.service import TEST_PAYMENT_METHODS

        customer = await self.stripe.load(p.required_text("customer"), "customer", param="customer")
        if not p.has("items.0.price"):
            raise missing_param("items[0][price]")
        price = await self.stripe.load(p.required_text("items.0.price"), "price", param="price")
        if price.body.get("type") != "recurring" or not price.body.get("active"):
            raise invalid("The price must be an active recurring price.", param="items[0][price]")
        card_id = p.text("default_payment_method")
        if card_id is not None and card_id not in TEST_PAYMENT_METHODS:
            raise no_such("PaymentMethod", card_id, param="default_payment_method")
        clock = await self._clock_of(customer)
        start = int((await self.stripe.load(clock, "test_helpers.test_clock")).body["frozen_time"])
        trial_days = price.body["recurring"].get("trial_period_days")
        trialing = p.boolean("trial_from_plan") and bool(trial_days)
        body = objects.template("subscription")
        sub_id = objects.new_id("sub", 24)
        item = body["items"]["data"][0]
        end = start + (int(trial_days) * 86400 if trialing else _period(price.body))
        item.update(
            id=objects.new_id("si", 14),
            subscription=sub_id,
            created=start,
            current_period_start=start,
            current_period_end=end,
            price=price.body,
        )
        body["items"]["url"] = f"/v1/subscription_items?subscription={sub_id}"
        body.update(
            id=sub_id,
            customer=customer.id,
            created=start,
            start_date=start,
            billing_cycle_anchor=end if trialing else start,
            currency=price.body["currency"],
            default_payment_method=card_id,
            metadata=p.metadata(),
            status="trialing" if trialing else "incomplete",
            trial_start=start if trialing else None,
            trial_end=end if trialing else None,
            test_clock=clock,
            latest_invoice=None,
        )
        await self.objects.add("subscription", body)
        await self.stripe.emit("customer.subscription.created", body)
        row = await self.stripe.load(sub_id, "subscription")
        if trialing:
            await self._invoice(row, amount=0, reason="subscription_create", start=start, end=end)
        else:
            card = TEST_PAYMENT_METHODS.get(card_id or "pm_card_visa", "success")
            await self._invoice(
                row,
                amount=int(price.body["unit_amount"]),
                reason="subscription_create",
                start=start,
                end=end,
                card=card,
            )
        return (await self.stripe.load(sub_id, "subscription")).body

    async def _invoice(
        self,
        row: SandboxObject,
        *,
        amount: int,
        reason: str,
        start: int,
        end: int,
        card: str = "success",
    ) -> dict[str, Any]:
        """An invoice of ``row``'s period, paid with ``card`` or left open."""
        sub = row.body
        price = sub["items"]["data"][0]["price"]
        invoice = objects.template("invoice")
        invoice_id = objects.new_id("in", 24)
        line = invoice["lines"]["data"][0]
        line.update(
            id=objects.new_id("il", 24),
            amount=amount,
            currency=sub["currency"],
            description=f"1 x {price['id']}",
            period={"start": start, "end": end},
        )
        line["parent"]["subscription_item_details"].update(
            subscription=sub["id"], subscription_item=sub["items"]["data"][0]["id"]
        )
        invoice["lines"]["url"] = f"/v1/invoices/{invoice_id}/lines"
        invoice.update(
            id=invoice_id,
            amount_due=amount,
            amount_paid=0,
            amount_remaining=amount,
            attempt_count=0,
            attempted=False,
            billing_reason=reason,
            created=start,
            currency=sub["currency"],
            customer=sub["customer"],
            hosted_invoice_url=f"{self.stripe.base}/sandbox/",
            number=None,
            period_start=start,
            period_end=end,
            status="open",
            subtotal=amount,
            total=amount,
            confirmation_secret=None,
            status_transitions={
                "finalized_at": start,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
        )
        invoice["parent"]["subscription_details"] = {
            "metadata": dict(sub.get("metadata") or {}),
            "subscription": sub["id"],
        }
        await self.objects.add("invoice", invoice)
        await self.stripe.emit("invoice.finalized", invoice)
        sub["latest_invoice"] = invoice_id
        await self.objects.save(row, sub)
        if amount == 0 or card == "success":
            await self._pay(invoice_id)
        else:
            await self._unpaid(row, invoice_id, card)
        return (await self.stripe.load(invoice_id, "invoice")).body

    async def _charge(self, invoice: dict[str, Any]) -> tuple[str, str]:
        """The PaymentIntent and charge that pay ``invoice``: the invoice's own
        PaymentIntent when the customer paid it on its page, else a new one charged to
        the subscription's card (with its balance transaction and Stripe's fee)."""
        secret = (invoice.get("confirmation_secret") or {}).get("client_secret")
        if isinstance(secret, str) and "_secret_" in secret:
            found = await self.objects.get(secret.split("_secret_", 1)[0])
            if (
                found is not None
                and found.body.get("status") == "succeeded"
                and found.body.get("latest_charge")
            ):
                return found.id, str(found.body["latest_charge"])
        amount, currency = int(invoice["amount_due"]), str(invoice["currency"])
        intent = objects.payment_intent(
            amount=amount,
            currency=currency,
            customer_id=str(invoice["customer"]),
            metadata={"sandbox_invoice": str(invoice["id"])},
            description=f"Invoice {invoice['id']}",
            payment_method=None,
            receipt_email=None,
            automatic_payment_methods=False,
        )
        txn = await self.stripe._txn(
            amount=amount,
            currency=currency,
            type_="charge",
            category="charge",
            source=None,
            fee=objects.card_fee(amount, currency),
            description=intent["description"],
        )
        intent["payment_method"] = objects.new_id("pm")
        charge = objects.charge(
            intent=intent, succeeded=True, balance_transaction_id=txn["id"], three_d_secure=False
        )
        await self.stripe._set_source(txn, charge["id"])
        await self.objects.add("charge", charge)
        intent.update(status="succeeded", amount_received=amount, latest_charge=charge["id"])
        await self.objects.add("payment_intent", intent)
        return str(intent["id"]), str(charge["id"])

    async def _pay(self, invoice_id: str) -> None:
        invoice_row = await self.stripe.load(invoice_id, "invoice")
        invoice = invoice_row.body
        if int(invoice["amount_due"]) > 0:
            intent_id, _charge_id = await self._charge(invoice)
            payment = {
                "id": objects.new_id("inpay", 24),
                "object": "invoice_payment",
                "amount_paid": invoice["amount_due"],
                "amount_requested": invoice["amount_due"],
                "created": objects.now(),
                "currency": invoice["currency"],
                "invoice": invoice_id,
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": intent_id},
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": objects.now()},
            }
            invoice["payments"] = {
                "object": "list",
                "data": [payment],
                "has_more": False,
                "url": f"/v1/invoice_payments?invoice={invoice_id}",
            }
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            attempt_count=int(invoice.get("attempt_count") or 0) + 1,
            attempted=True,
        )
        invoice["status_transitions"]["paid_at"] = objects.now()
        await self.objects.save(invoice_row, invoice)
        await self.stripe.emit("invoice.paid", invoice)
        sub_id = invoice["parent"]["subscription_details"]["subscription"]
        sub_row = await self.stripe.load(sub_id, "subscription")
        sub = sub_row.body
        if sub["status"] in ("incomplete", "past_due", "unpaid"):
            previous = {"status": sub["status"]}
            sub["status"] = "active"
            await self.objects.save(sub_row, sub)
            await self.stripe.emit("customer.subscription.updated", sub, previous=previous)

    async def _unpaid(self, row: SandboxObject, invoice_id: str, card: str) -> None:
        invoice_row = await self.stripe.load(invoice_id, "invoice")
        invoice = invoice_row.body
        intent = objects.payment_intent(
            amount=int(invoice["amount_due"]),
            currency=str(invoice["currency"]),
            customer_id=str(invoice["customer"]),
            metadata={"sandbox_invoice": invoice_id},
            description=f"Invoice {invoice_id}",
            payment_method=None,
            receipt_email=None,
            automatic_payment_methods=False,
        )
        await self.objects.add("payment_intent", intent)
        invoice.update(
            attempt_count=int(invoice.get("attempt_count") or 0) + 1,
            attempted=True,
            confirmation_secret={
                "client_secret": intent["client_secret"],
                "type": "payment_intent",
            },
            next_payment_attempt=None,
        )
        await self.objects.save(invoice_row, invoice)
        sub = row.body
        if invoice["billing_reason"] == "subscription_create":
            if card == "3ds_required":
                await self.stripe.emit("invoice.payment_action_required", invoice)
            else:
                await self.stripe.emit("invoice.payment_failed", invoice)
            return
        await self.stripe.emit("invoice.payment_failed", invoice)
        if sub["status"] != "past_due":
            previous = {"status": sub["status"]}
            sub["status"] = "past_due"
            await self.objects.save(row, sub)
            await self.stripe.emit("customer.subscription.updated", sub, previous=previous)

    async def intent_succeeded(self, intent: dict[str, Any]) -> None:
        """A PaymentIntent of an invoice succeeded (its sandbox page): pay the invoice."""
        invoice_id = (intent.get("metadata") or {}).get("sandbox_invoice")
        if not isinstance(invoice_id, str):
            return
        row = await self.objects.get(invoice_id, for_update=True)
        if row is not None and row.body.get("status") == "open":
            await self._pay(invoice_id)

    async def update_subscription(self, sub_id: str, p: Params) -> dict[str, Any]:
        row = await self.stripe.load(sub_id, "subscription")
        sub = row.body
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise invalid("A canceled subscription can no longer be updated.", param="id")
        previous: dict[str, Any] = {}
        if p.has("cancel_at_period_end"):
            previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
            sub["cancel_at_period_end"] = p.boolean("cancel_at_period_end")
            sub["canceled_at"] = objects.now() if sub["cancel_at_period_end"] else None
        if p.has("items.0.price"):
            item = sub["items"]["data"][0]
            if p.text("items.0.id") not in (None, item["id"]):
                raise no_such("subscription item", str(p.text("items.0.id")), param="items[0][id]")
            price = await self.stripe.load(p.required_text("items.0.price"), "price")
            previous["items"] = {"data": [{"price": {"id": item["price"]["id"]}}]}
            item["price"] = price.body
        if p.has("default_payment_method"):
            sub["default_payment_method"] = p.text("default_payment_method")
        if p.has("pause_collection"):
            previous["pause_collection"] = sub.get("pause_collection")
            if p.raw("pause_collection") == "":
                sub["pause_collection"] = None
            else:
                behavior = p.text("pause_collection.behavior")
                if behavior not in ("void", "keep_as_draft", "mark_uncollectible"):
                    raise invalid(
                        "Invalid pause_collection[behavior].", param="pause_collection[behavior]"
                    )
                sub["pause_collection"] = {
                    "behavior": behavior,
                    "resumes_at": p.integer("pause_collection.resumes_at", minimum=0),
                }
        await self.objects.save(row, sub)
        await self.stripe.emit("customer.subscription.updated", sub, previous=previous)
        return sub

    async def cancel_subscription(self, sub_id: str) -> dict[str, Any]:
        row = await self.stripe.load(sub_id, "subscription")
        return await self._end(row)

    async def _end(self, row: SandboxObject) -> dict[str, Any]:
        sub = row.body
        if sub["status"] == "canceled":
            raise invalid("This subscription is already canceled.", param="id")
        now = objects.now()
        sub.update(status="canceled", ended_at=now, canceled_at=sub.get("canceled_at") or now)
        await self.objects.save(row, sub)
        await self.stripe.emit("customer.subscription.deleted", sub)
        return sub

    async def preview(self, p: Params) -> dict[str, Any]:
        """Stripe's proration of an item's price change at ``proration_date``."""
        row = await self.stripe.load(
            p.required_text("subscription"), "subscription", param="subscription"
        )
        sub = row.body
        item = sub["items"]["data"][0]
        new_price = await self.stripe.load(
            p.required_text("subscription_details.items.0.price"), "price"
        )
        at = p.integer("subscription_details.proration_date") or objects.now()
        start, end = int(item["current_period_start"]), int(item["current_period_end"])
        remaining = max(0, min(end - at, end - start))
        span = max(1, end - start)
        old_amount = int(item["price"]["unit_amount"])
        new_amount = int(new_price.body["unit_amount"])
        lines = [
            (-(old_amount * remaining // span), "Unused time", True),
            (new_amount * remaining // span, "Remaining time", True),
            (new_amount, "Next period", False),
        ]
        invoice = objects.template("invoice")
        template_line = invoice["lines"]["data"][0]
        data = []
        for amount, description, proration in lines:
            line = {**template_line, "id": objects.new_id("il", 24), "amount": amount}
            line["description"] = description
            line["parent"] = {
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": sub["id"],
                    "subscription_item": item["id"],
                },
            }
            data.append(line)
        total = sum(amount for amount, _, _ in lines)
        invoice.update(
            id=None,
            status="draft",
            amount_due=max(total, 0),
            amount_paid=0,
            amount_remaining=max(total, 0),
            currency=sub["currency"],
            customer=sub["customer"],
            subtotal=total,
            total=total,
        )
        invoice["lines"] = {"object": "list", "data": data, "has_more": False, "url": ""}
        return invoice

    async def invoice_payments(self, p: Params) -> dict[str, Any]:
        """The payment of a paid invoice (its PaymentIntent); none for $0 invoices."""
        row = await self.stripe.load(p.required_text("invoice"), "invoice", param="invoice")
        listing = objects.empty_list("/v1/invoice_payments")
        listing["data"] = list((row.body.get("payments") or {}).get("data") or [])
        return listing

    # ------------------------------------------------------------ test clocks

    async def advance_clock(self, clock_id: str, frozen_time: int) -> dict[str, Any]:
        """Move the clock forward and run every renewal due on its subscriptions."""
        from payments_sandbox.service import TEST_PAYMENT_METHODS

        clock_row = await self.stripe.load(clock_id, "test_helpers.test_clock")
        clock = clock_row.body
        if frozen_time <= int(clock["frozen_time"]):
            raise invalid("A test clock only moves forward.", param="frozen_time")
        rows, _ = await self.objects.page(
            "subscription", account=None, filters={"test_clock": clock_id}, limit=100
        )
        for found in rows:
            row = await self.stripe.load(found.id, "subscription")
            while True:
                sub = row.body
                item = sub["items"]["data"][0]
                end = int(item["current_period_end"])
                if sub["status"] not in ("trialing", "active", "past_due") or end > frozen_time:
                    break
                if sub["cancel_at_period_end"]:
                    await self._end(row)
                    break
                next_end = end + _period(item["price"])
                item.update(current_period_start=end, current_period_end=next_end)
                previous: dict[str, Any] = {"current_period_end": end}
                if sub["status"] == "trialing":
                    previous["status"] = "trialing"
                    sub.update(status="active")
                pause = sub.get("pause_collection")
                if pause and pause.get("resumes_at") and int(pause["resumes_at"]) <= end:
                    previous["pause_collection"] = pause
                    sub["pause_collection"] = pause = None
                await self.objects.save(row, sub)
                await self.stripe.emit("customer.subscription.updated", sub, previous=previous)
                if pause:
                    # Collection paused: the period's invoice is not collected (the
                    # sandbox makes none, as ``void`` would void it).
                    row = await self.stripe.load(found.id, "subscription")
                    continue
                card = TEST_PAYMENT_METHODS.get(
                    sub.get("default_payment_method") or "pm_card_visa", "success"
                )
                await self._invoice(
                    row,
                    amount=int(item["price"]["unit_amount"]),
                    reason="subscription_cycle",
                    start=end,
                    end=next_end,
                    card=card,
                )
                row = await self.stripe.load(found.id, "subscription")
        clock["frozen_time"] = frozen_time
        await self.objects.save(clock_row, clock)
        return clock


def _period(price: dict[str, Any]) -> int:
    recurring = price.get("recurring") or {}
    return INTERVAL_SECONDS[str(recurring.get("interval", "month"))] * int(
        recurring.get("interval_count") or 1
    )
