"""The sandbox's Stripe: what a card does to a PaymentIntent. Succeed (charge, balance
transaction, destination transfer), authorize only, need 3-D Secure, fail, or be
canceled."""

from __future__ import annotations

from typing import Any

from payments_sandbox import objects
from payments_sandbox.billing import SandboxBilling
from payments_sandbox.cards import card_of_fingerprint, outcome
from payments_sandbox.core import CONFIRMABLE, Card, PageError
from payments_sandbox.disputes import Disputes
from payments_sandbox.errors import invalid, refused
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params

# How a failing test card fails: Stripe's error code, decline code and message. Any
# other failing card is a generic decline, as the `decline` card.
_FAILURES: dict[Card, tuple[str, str | None, str]] = {
    "3ds_fail": (
        "payment_intent_authentication_failure",
        None,
        "We are unable to authenticate your payment method. Please choose "
        "a different payment method and try again.",
    ),
    "authentication_required": (
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
    "expired_card": ("expired_card", "expired_card", "Your card has expired."),
    "insufficient_funds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "decline": ("card_declined", "generic_decline", "Your card was declined."),
}


def _unsettled_charge(
    intent: dict[str, Any],
    *,
    succeeded: bool,
    three_d_secure: bool = False,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> dict[str, Any]:
    """A charge of ``intent``'s card that moves no money: an authorization or a decline
    (the sandbox makes up the PaymentMethod when the intent has none)."""
    intent["payment_method"] = intent.get("payment_method") or objects.new_id("pm")
    return objects.charge(
        intent=intent,
        succeeded=succeeded,
        balance_transaction_id=None,
        three_d_secure=three_d_secure,
        failure_code=failure_code,
        failure_message=failure_message,
    )


def _charged(charge: dict[str, Any]) -> dict[str, Any]:
    """What a card charge that went through sets on its PaymentIntent."""
    return {
        "latest_charge": charge["id"],
        "last_payment_error": None,
        "next_action": None,
        "payment_method_types": ["card"],
    }


class PaymentIntentOutcomes(Disputes):
    """What a card does to a PaymentIntent: succeed (charge, balance transaction,
    destination transfer), authorize only, need 3-D Secure, fail, or be canceled."""

    async def _transfer_data(self, p: Params, *, amount: int) -> dict[str, Any] | None:
        """``transfer_data[destination]`` of a destination charge, checked as Stripe does."""
        destination = p.text("transfer_data.destination")
        if destination is None:
            return None
        row = await self.load(
            destination, "account", resource="destination", param="transfer_data[destination]"
        )
        self._can_receive_transfers(row, param="transfer_data[destination]")
        transfer_amount = p.integer("transfer_data.amount", minimum=1)
        if transfer_amount is not None and transfer_amount > amount:
            raise invalid(
                "transfer_data[amount] cannot exceed the amount.", param="transfer_data[amount]"
            )
        return {"amount": transfer_amount, "destination": destination}

    async def _card_behaviour(
        self, row: SandboxObject, payment_method: str, *, off_session: bool
    ) -> Card | None:
        """What a saved (sandbox) PaymentMethod does when charged: its test card's."""
        saved = await self.objects.get(payment_method)
        if saved is None or saved.type != "payment_method":
            return None
        owner = saved.body.get("customer")
        if row.body.get("customer") and owner != row.body.get("customer"):
            raise refused(
                f"The provided PaymentMethod {payment_method} was previously used with a "
                "PaymentIntent without Customer attachment, shared with a connected account "
                "without Customer attachment, or was detached from a Customer.",
                code="payment_method_unexpected_state",
                param="payment_method",
            )
        test = card_of_fingerprint((saved.body.get("card") or {}).get("fingerprint"))
        if test is None:
            return "success"
        return outcome(test, off_session=off_session)

    async def _cancel_intent(self, row: SandboxObject, reason: str) -> None:
        body = row.body
        body.update(
            status="canceled",
            cancellation_reason=reason,
            canceled_at=objects.now(),
            next_action=None,
        )
        await self.objects.save(row, body)
        await self.emit("payment_intent.canceled", body)

    async def _confirm(self, row: SandboxObject, card: Card) -> str:
        """Run one payment attempt; returns the PaymentIntent's new status."""
        status = row.body["status"]
        if card in ("3ds_pass", "3ds_fail"):
            if status != "requires_action":
                raise PageError("This payment does not wait for authentication.")
        elif status not in (*CONFIRMABLE, "requires_action"):
            # requires_action included: the customer left the challenge and tries again.
            raise PageError(f"This payment cannot be confirmed: it is {status}.")
        if card == "3ds_required":
            body = row.body
            body.update(
                status="requires_action",
                payment_method=body.get("payment_method") or "pm_card_threeDSecure2Required",
                next_action=objects.authenticate_next_action(
                    f"{self.base}/sandbox/payment_intents/{body['id']}/authenticate"
                ),
            )
            await self.objects.save(row, body)
            await self.emit("payment_intent.requires_action", body)
            return "requires_action"
        if card in ("success", "3ds_pass"):
            await self._succeed(row, three_d_secure=card == "3ds_pass")
            return str(row.body["status"])
        code, decline_code, message = _FAILURES.get(card, _FAILURES["decline"])
        await self._fail(row, code=code, decline_code=decline_code, message=message)
        return "requires_payment_method"

    async def _authorize(self, row: SandboxObject, *, three_d_secure: bool) -> None:
        """``capture_method=manual``: the card holds the amount, nothing is charged (no
        balance transaction) until the capture."""
        intent = row.body
        charge = _unsettled_charge(intent, succeeded=True, three_d_secure=three_d_secure)
        charge.update(captured=False, amount_captured=0)
        charge_row = await self.objects.add("charge", charge)
        intent.update(
            status="requires_capture", amount_capturable=int(intent["amount"]), **_charged(charge)
        )
        await self.objects.save(row, intent)
        await self.emit("charge.succeeded", charge_row.body)
        await self.emit("payment_intent.amount_capturable_updated", intent)

    async def _succeed(self, row: SandboxObject, *, three_d_secure: bool) -> None:
        intent = row.body
        if intent.get("capture_method") == "manual":
            await self._authorize(row, three_d_secure=three_d_secure)
            return
        charge_row = await self.charge_card(intent, three_d_secure=three_d_secure)
        charge = charge_row.body
        amount, currency = int(intent["amount"]), str(intent["currency"])
        intent.update(status="succeeded", amount_received=amount, **_charged(charge))
        await self.objects.save(row, intent)
        transfer_data = intent.get("transfer_data")
        if transfer_data:
            # A destination charge: Stripe moves the payee's part to the connected account.
            transfer_amount = transfer_data.get("amount") or amount - int(
                intent.get("application_fee_amount") or 0
            )
            transfer = await self._transfer(
                amount=transfer_amount,
                currency=currency,
                destination=str(transfer_data["destination"]),
                description=None,
                metadata={},
                transfer_group=intent.get("transfer_group"),
                source_transaction=charge["id"],
            )
            charge = charge_row.body
            charge["transfer"] = transfer["id"]
            charge["transfer_data"] = transfer_data
            await self.objects.save(charge_row, charge)
        await self.emit("charge.succeeded", charge_row.body)
        await self.emit("payment_intent.succeeded", intent)
        # The PaymentIntent of a subscription's invoice pays that invoice.
        await SandboxBilling(self).intent_succeeded(intent)

    async def _fail(
        self, row: SandboxObject, *, code: str, decline_code: str | None, message: str
    ) -> None:
        intent = row.body
        charge = _unsettled_charge(
            intent, succeeded=False, failure_code=code, failure_message=message
        )
        await self.objects.add("charge", charge)
        error: dict[str, Any] = {
            "type": "card_error",
            "code": code,
            "message": message,
            "charge": charge["id"],
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "payment_method": {"id": intent["payment_method"], "object": "payment_method"},
        }
        if decline_code is not None:
            error["decline_code"] = decline_code
        intent.update(
            status="requires_payment_method",
            last_payment_error=error,
            latest_charge=charge["id"],
            next_action=None,
        )
        await self.objects.save(row, intent)
        await self.emit("charge.failed", charge)
        await self.emit("payment_intent.payment_failed", intent)
