"""The sandbox's Stripe: the PaymentIntent API (create, confirm, cancel, capture) and
authorizations expiring."""

from __future__ import annotations

import copy
from typing import Any

from payments_api.money import exponent
from payments_sandbox import objects
from payments_sandbox.core import CONFIRMABLE, Card, format_money
from payments_sandbox.errors import StripeApiError, invalid, no_such, refused
from payments_sandbox.intent_outcomes import PaymentIntentOutcomes
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params

# Stripe's test PaymentMethods (https://docs.stripe.com/testing) and what they do here.
TEST_PAYMENT_METHODS: dict[str, Card] = {
    "pm_card_visa": "success",
    "pm_card_mastercard": "success",
    "pm_card_amex": "success",
    "pm_card_us": "success",
    "pm_card_createDispute": "success",
    "pm_card_chargeDeclined": "decline",
    "pm_card_visa_chargeDeclined": "decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_authenticationRequired": "3ds_required",
    "pm_card_threeDSecure2Required": "3ds_required",
    "pm_card_threeDSecureRequired": "3ds_required",
    "pm_card_authenticationRequiredOnSetup": "3ds_required",
    "pm_card_chargeCustomerFail": "decline",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
}
# A PaymentIntent below this many minor units is refused (Stripe: 0.50 usd and alike).
MINIMUM_CHARGE_MINOR = {0: 50, 2: 50, 3: 500}


def _minimum_charge(currency: str) -> int:
    return MINIMUM_CHARGE_MINOR.get(exponent(currency), 50)


def capture_method_of(p: Params) -> str:
    method = p.text("capture_method") or "automatic"
    if method not in ("automatic", "automatic_async", "manual"):
        raise invalid(
            "Invalid capture_method: must be one of automatic, automatic_async, or manual",
            param=p._display("capture_method"),
        )
    return method


def _off_session(p: Params) -> bool:
    """``off_session``: ``true`` or Stripe's older ``one_off`` / ``recurring``."""
    return p.text("off_session") in ("true", "one_off", "recurring")


class PaymentIntents(PaymentIntentOutcomes):
    """The PaymentIntent API: create, confirm, cancel, capture, and authorizations
    expiring."""

    async def create_payment_intent(self, p: Params) -> dict[str, Any] | StripeApiError:
        amount = p.required_integer("amount", minimum=1)
        currency = p.currency()
        assert currency is not None  # noqa: S101 - required
        if amount < _minimum_charge(currency):
            raise invalid(
                f"Amount must be at least {format_money(_minimum_charge(currency), currency)}",
                param="amount",
                code="amount_too_small",
            )
        customer_id = await self._customer(p)
        payment_method = p.text("payment_method")
        body = objects.payment_intent(
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            metadata=p.metadata(),
            description=p.text("description"),
            payment_method=payment_method,
            receipt_email=p.text("receipt_email"),
            automatic_payment_methods=p.boolean("automatic_payment_methods.enabled"),
        )
        body["transfer_data"] = await self._transfer_data(p, amount=amount)
        body["application_fee_amount"] = p.integer("application_fee_amount", minimum=1)
        if (body["application_fee_amount"] or 0) > amount:
            raise invalid(
                "The application fee cannot exceed the amount.", param="application_fee_amount"
            )
        body["transfer_group"] = p.text("transfer_group")
        body["on_behalf_of"] = p.text("on_behalf_of")
        body["capture_method"] = capture_method_of(p)
        row = await self.objects.add("payment_intent", body)
        await self.emit("payment_intent.created", body)
        if p.boolean("confirm"):
            return await self._confirm_api(row, payment_method, off_session=_off_session(p))
        return row.body

    async def confirm_payment_intent(
        self, intent_id: str, p: Params
    ) -> dict[str, Any] | StripeApiError:
        row = await self.load(intent_id, "payment_intent")
        return await self._confirm_api(row, p.text("payment_method"), off_session=_off_session(p))

    async def _confirm_api(
        self, row: SandboxObject, payment_method: str | None, *, off_session: bool = False
    ) -> dict[str, Any] | StripeApiError:
        """Confirm with a test PaymentMethod; a decline is answered with Stripe's 402
        card error after the failure is recorded (and its events emitted)."""
        payment_method = payment_method or row.body.get("payment_method")
        if not payment_method:
            raise refused(
                "You cannot confirm this PaymentIntent because it's missing a payment "
                "method. To confirm the PaymentIntent with "
                f"{row.body['id']}, specify a payment method attached to this customer "
                "along with the customer ID.",
                code="payment_intent_unexpected_state",
            )
        if row.body["status"] not in CONFIRMABLE:
            raise refused(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{row.body['status']}.",
                code="payment_intent_unexpected_state",
            )
        card = TEST_PAYMENT_METHODS.get(payment_method)
        if card is None:
            card = await self._card_behaviour(row, payment_method, off_session=off_session)
        if card is None and not payment_method.startswith(("pm_", "card_")):
            raise no_such("PaymentMethod", payment_method, param="payment_method")
        if off_session and card == "3ds_required":
            # Nobody is there to authenticate: Stripe declines instead.
            card = "authentication_required"
        body = row.body
        body["payment_method"] = payment_method
        await self.objects.save(row, body)
        status = await self._confirm(row, card or "success")
        if status == "requires_payment_method":
            error = row.body["last_payment_error"]
            return StripeApiError(
                402,
                error["message"],
                type="card_error",
                code=error["code"],
                decline_code=error.get("decline_code"),
                param=None,
                extra={"payment_intent": copy.deepcopy(row.body)},
            )
        if payment_method == "pm_card_createDispute" and status == "succeeded":
            await self.open_dispute(str(row.body["latest_charge"]), None, "fraudulent")
        return row.body

    async def cancel_payment_intent(self, intent_id: str, p: Params) -> dict[str, Any]:
        row = await self.load(intent_id, "payment_intent")
        if row.body["status"] not in (*CONFIRMABLE, "requires_action", "requires_capture"):
            raise refused(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{row.body['status']}. Only a PaymentIntent with one of the following "
                "statuses may be canceled: requires_payment_method, requires_capture, "
                "requires_confirmation, requires_action, processing.",
                code="payment_intent_unexpected_state",
            )
        reason = p.text("cancellation_reason") or "requested_by_customer"
        await self._cancel_intent(row, reason)
        return row.body

    async def attempt_payment_intent(self, intent_id: str, card: Card) -> dict[str, Any]:
        """The customer pressed a button on the sandbox's PaymentIntent page."""
        row = await self.load(intent_id, "payment_intent")
        await self._confirm(row, card)
        return row.body

    async def capture_payment_intent(self, intent_id: str, p: Params) -> dict[str, Any]:
        """Capture an authorization, all or ``amount_to_capture`` of it; the rest is
        released. Since API version 2025-03-31.basil (Stripe's changelog: "Partially
        capturing or canceling payments no longer creates a Refund") the release is no
        refund: no Refund object, ``amount_refunded`` untouched, one balance transaction
        (the captured amount) and no ``charge.refunded``; only ``charge.captured`` and
        ``payment_intent.succeeded``."""
        row = await self.load(intent_id, "payment_intent")
        intent = row.body
        if intent["status"] != "requires_capture":
            raise refused(
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following "
                "statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        capturable = int(intent["amount_capturable"])
        amount = p.integer("amount_to_capture", minimum=1) or capturable
        currency = str(intent["currency"])
        if amount > capturable:
            raise invalid(
                "The amount_to_capture must be less than or equal to the amount_capturable "
                f"({format_money(capturable, currency)}).",
                param="amount_to_capture",
                code="amount_too_large",
            )
        charge_row = await self.load(str(intent["latest_charge"]), "charge")
        txn = await self._txn(
            "charge",
            amount,
            currency,
            source=charge_row.body["id"],
            fee=objects.card_fee(amount, currency),
            description=intent.get("description"),
        )
        charge = charge_row.body
        charge.update(
            captured=True,
            amount_captured=amount,
            balance_transaction=txn["id"],
        )
        await self.objects.save(charge_row, charge)
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        await self.objects.save(row, intent)
        await self.emit("charge.captured", charge)
        await self.emit("payment_intent.succeeded", intent)
        return intent

    async def expire_authorization(self, intent_id: str) -> dict[str, Any]:
        """Stripe's capture window passed (7 days for cards): the authorization is
        cancelled by Stripe itself. Since 2025-03-31.basil: ``cancellation_reason=expired``
        (it was ``automatic``), ``charge.expired`` and ``payment_intent.canceled``, and no
        Refund (the charge keeps ``amount_captured=0``, ``refunded=false``)."""
        row = await self.load(intent_id, "payment_intent")
        if row.body["status"] != "requires_capture":
            raise refused(
                f"Only an authorized PaymentIntent (requires_capture) can expire; this one is "
                f"{row.body['status']}.",
                code="payment_intent_unexpected_state",
            )
        charge = await self.load(str(row.body["latest_charge"]), "charge")
        await self.emit("charge.expired", charge.body)
        await self._cancel_intent(row, "expired")
        return row.body
