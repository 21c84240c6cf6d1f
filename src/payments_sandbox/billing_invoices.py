"""The sandbox's Stripe Billing, invoices: made for a subscription period, charged to
the subscription's card (paid, or open and unpaid with a PaymentIntent to finish on its
page), and paid later when that PaymentIntent succeeds. See ``billing.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments_sandbox import objects
from payments_sandbox.errors import StripeApiError, no_such, refused
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params

if TYPE_CHECKING:
    from payments_sandbox.core import SandboxCore


class BillingInvoices:
    """Invoices and their payment, on a request's ``SandboxCore``."""

    def __init__(self, stripe: SandboxCore) -> None:
        self.stripe = stripe
        self.objects = stripe.objects

    # ------------------------------------------------------------ invoices

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
        charge = (await self.stripe.charge_card(intent, three_d_secure=False)).body
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

    async def pay_invoice(self, invoice_id: str, p: Params) -> dict[str, Any] | StripeApiError:
        """``POST /v1/invoices/{id}/pay``: charge an open invoice now to ``payment_method``
        (else the subscription's card). As Stripe: a card that needs authentication is
        ``invoice_payment_intent_requires_action`` when the customer is present
        (``off_session=false``) and a decline when not (the default); a declined card
        is a card error and a failed attempt (``invoice.payment_failed``)."""
        from payments_sandbox.payment_intents import TEST_PAYMENT_METHODS

        row = await self.stripe.load(invoice_id, "invoice")
        if row.body["status"] != "open":
            raise refused(
                f"Invoice is {row.body['status']}; only an open invoice can be paid.", code=None
            )
        sub_id = row.body["parent"]["subscription_details"]["subscription"]
        sub = (await self.stripe.load(sub_id, "subscription")).body
        card_id = p.text("payment_method") or sub.get("default_payment_method") or "pm_card_visa"
        card = TEST_PAYMENT_METHODS.get(str(card_id))
        if card is None:
            raise no_such("PaymentMethod", str(card_id), param="payment_method")
        if card == "3ds_required" and not p.boolean("off_session", default=True):
            return StripeApiError(
                402,
                "This payment requires additional user action before it can be completed.",
                type="card_error",
                code="invoice_payment_intent_requires_action",
            )
        if card in ("success", "3ds_pass"):
            await self._pay(invoice_id)
            return (await self.stripe.load(invoice_id, "invoice")).body
        invoice = row.body
        invoice.update(attempt_count=int(invoice.get("attempt_count") or 0) + 1, attempted=True)
        await self.objects.save(row, invoice)
        await self.stripe.emit("invoice.payment_failed", invoice)
        decline = {"decline": "generic_decline", "3ds_required": "authentication_required"}
        return StripeApiError(
            402,
            "Your card was declined.",
            type="card_error",
            code="card_declined",
            decline_code=decline.get(card, card),
        )

    async def intent_succeeded(self, intent: dict[str, Any]) -> None:
        """A PaymentIntent of an invoice succeeded (its sandbox page): pay the invoice."""
        invoice_id = (intent.get("metadata") or {}).get("sandbox_invoice")
        if not isinstance(invoice_id, str):
            return
        row = await self.objects.get(invoice_id, for_update=True)
        if row is not None and row.body.get("status") == "open":
            await self._pay(invoice_id)

    async def invoice_payments(self, p: Params) -> dict[str, Any]:
        """The payment of a paid invoice (its PaymentIntent); none for $0 invoices."""
        row = await self.stripe.load(p.required_text("invoice"), "invoice", param="invoice")
        listing = objects.empty_list("/v1/invoice_payments")
        listing["data"] = list((row.body.get("payments") or {}).get("data") or [])
        return listing
