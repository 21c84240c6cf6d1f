"""The sandbox's Stripe: Checkout Sessions, created, paid on the hosted page, expired."""

from __future__ import annotations

from typing import Any

from payments_sandbox import objects
from payments_sandbox.core import Card, PageError
from payments_sandbox.errors import invalid, missing_param, no_such, refused
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params
from payments_sandbox.payment_intents import capture_method_of
from payments_sandbox.refunds import Refunds


class CheckoutSessions(Refunds):
    """Checkout Sessions: created, paid on the hosted page, expired."""

    async def create_checkout_session(self, p: Params) -> dict[str, Any]:
        mode = p.required_text("mode")
        if mode != "payment":
            raise invalid(
                "The sandbox supports Checkout Sessions with mode=payment only.", param="mode"
            )
        items = p.raw("line_items")
        if not isinstance(items, list) or not items:
            raise missing_param("line_items")
        total, currency, line_items = 0, None, []
        for index in range(len(items)):
            item = p.child(f"line_items.{index}")
            if item.has("price"):
                raise no_such("price", item.required_text("price"), param=item._display("price"))
            quantity = item.required_integer("quantity", minimum=1)
            item_currency = item.currency("price_data.currency")
            unit_amount = item.required_integer("price_data.unit_amount", minimum=0)
            name = item.required_text("price_data.product_data.name")
            if currency is not None and item_currency != currency:
                raise invalid(
                    "All line items must be in the same currency.",
                    param=item._display("price_data.currency"),
                )
            currency = item_currency
            total += unit_amount * quantity
            line_items.append({"name": name, "quantity": quantity, "unit_amount": unit_amount})
        assert currency is not None  # noqa: S101 - at least one item
        created = objects.now()
        expires_at = p.integer("expires_at")
        if expires_at is None:
            expires_at = created + 86400
        elif not created + 1800 - 60 <= expires_at <= created + 86400 + 60:
            raise invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.",
                param="expires_at",
            )
        customer_id = await self._customer(p)
        intent_data = p.child("payment_intent_data") if p.has("payment_intent_data") else None
        private: dict[str, Any] = {"line_items": line_items, "payment_intent_data": {}}
        if intent_data is not None:
            private["payment_intent_data"] = {
                "metadata": intent_data.metadata(),
                "description": intent_data.text("description"),
                "receipt_email": intent_data.text("receipt_email"),
                "transfer_data": await self._transfer_data(intent_data, amount=total),
                "application_fee_amount": intent_data.integer("application_fee_amount", minimum=1),
                "transfer_group": intent_data.text("transfer_group"),
                "on_behalf_of": intent_data.text("on_behalf_of"),
                "capture_method": capture_method_of(intent_data),
            }
        body = objects.checkout_session(
            url_base=self.base,
            amount_total=total,
            currency=currency,
            customer_id=customer_id,
            customer_email=p.text("customer_email"),
            client_reference_id=p.text("client_reference_id"),
            success_url=p.text("success_url"),
            cancel_url=p.text("cancel_url"),
            expires_at=expires_at,
            metadata=p.metadata(),
        )
        await self.objects.add("checkout.session", body, private=private)
        return body

    async def expire_checkout_session(self, session_id: str) -> dict[str, Any]:
        """The session can no longer be paid: ``checkout.session.expired``."""
        row = await self.load(session_id, "checkout.session", resource="checkout.session")
        body = row.body
        if body["status"] != "open":
            raise refused(
                'Only Checkout Sessions with a status in ["open"] can be expired.',
                code="checkout_session_not_open",
            )
        body["status"] = "expired"
        await self.objects.save(row, body)
        if body.get("payment_intent"):
            intent = await self.load(body["payment_intent"], "payment_intent")
            if intent.body["status"] not in ("succeeded", "canceled"):
                await self._cancel_intent(intent, "automatic")
        await self.emit("checkout.session.expired", body)
        return body

    async def attempt_checkout(self, session_id: str, card: Card) -> dict[str, Any]:
        """The customer pressed a button on the hosted checkout page."""
        row = await self.load(session_id, "checkout.session", resource="checkout.session")
        session = row.body
        if session["status"] != "open":
            raise PageError(f"This Checkout Session is {session['status']}.")
        intent = await self._session_intent(row)
        status = await self._confirm(intent, card)
        if status in ("succeeded", "requires_capture"):
            session = row.body
            customer_email = session.get("customer_email")
            if session.get("customer"):
                customer = await self.objects.get(session["customer"])
                customer_email = (customer.body.get("email") if customer else None) or (
                    customer_email
                )
            session.update(
                status="complete",
                # An authorization only (capture_method=manual): complete but not paid,
                # as Checkout reports it; the capture pays it later.
                payment_status="paid" if status == "succeeded" else "unpaid",
                customer_details={
                    "address": None,
                    "business_name": None,
                    "email": customer_email,
                    "individual_name": None,
                    "name": "Sandbox Customer",
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": [],
                },
            )
            await self.objects.save(row, session)
            await self.emit("checkout.session.completed", session)
        return row.body

    async def _session_intent(self, row: SandboxObject) -> SandboxObject:
        """The session's PaymentIntent, created at the first payment attempt (as
        Checkout does since API version 2022-08-01)."""
        session = row.body
        if session.get("payment_intent"):
            return await self.load(session["payment_intent"], "payment_intent")
        data = row.private.get("payment_intent_data") or {}
        body = objects.payment_intent(
            amount=int(session["amount_total"]),
            currency=str(session["currency"]),
            customer_id=session.get("customer"),
            metadata=dict(data.get("metadata") or {}),
            description=data.get("description"),
            payment_method=None,
            receipt_email=data.get("receipt_email"),
            automatic_payment_methods=False,
        )
        body["transfer_data"] = data.get("transfer_data")
        body["application_fee_amount"] = data.get("application_fee_amount")
        body["transfer_group"] = data.get("transfer_group")
        body["on_behalf_of"] = data.get("on_behalf_of")
        body["capture_method"] = data.get("capture_method") or "automatic"
        intent = await self.objects.add("payment_intent", body)
        session["payment_intent"] = body["id"]
        await self.objects.save(row, session)
        await self.emit("payment_intent.created", body)
        return intent
