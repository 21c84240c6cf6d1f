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
    pass
from payments_sandbox.billing_invoices import BillingInvoices

INTERVAL_SECONDS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}


class SandboxBilling(BillingInvoices):
    """Products, prices, subscriptions and test clocks (invoices: ``BillingInvoices``)."""

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
