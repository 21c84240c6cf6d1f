"""The sandbox's Stripe: refunds of charges (with the destination transfer's reversal)
and their failure."""

from __future__ import annotations

from typing import Any

from payments_api.money import proportional_part
from payments_sandbox import objects
from payments_sandbox.core import PageError, format_money
from payments_sandbox.errors import invalid, refused
from payments_sandbox.params import Params
from payments_sandbox.payment_intents import PaymentIntents


class Refunds(PaymentIntents):
    """Refunds of charges (with the destination transfer's reversal) and their failure."""

    async def create_refund(self, p: Params) -> dict[str, Any]:
        charge_id = p.text("charge")
        intent_id = p.text("payment_intent")
        if charge_id is None and intent_id is None:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        if charge_id is None:
            assert intent_id is not None  # noqa: S101 - checked above
            intent = await self.load(intent_id, "payment_intent", param="payment_intent")
            if intent.body["status"] != "succeeded" or not intent.body.get("latest_charge"):
                raise refused(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    code="charge_not_refundable",
                    param="payment_intent",
                )
            charge_id = str(intent.body["latest_charge"])
        row = await self.load(charge_id, "charge", param="charge")
        charge = row.body
        if charge["status"] != "succeeded":
            raise refused(f"Charge {charge_id} cannot be refunded.", code="charge_not_refundable")
        if charge.get("disputed"):
            raise refused(
                f"Charge {charge_id} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        remaining = int(charge["amount"]) - int(charge["amount_refunded"])
        if remaining <= 0:
            raise refused(
                f"Charge {charge_id} has already been refunded.", code="charge_already_refunded"
            )
        amount = p.integer("amount", minimum=1) or remaining
        currency = str(charge["currency"])
        if amount > remaining:
            raise refused(
                f"Refund amount ({format_money(amount, currency)}) is greater than unrefunded "
                f"amount on charge ({format_money(remaining, currency)})",
                code="amount_too_large",
                param="amount",
            )
        reason = p.text("reason")
        if reason is not None and reason not in (
            "duplicate",
            "fraudulent",
            "requested_by_customer",
        ):
            raise invalid(f"Invalid reason: {reason}", param="reason")
        txn = await self._txn("refund", -amount, currency)
        refund = objects.refund(
            charge_body=charge,
            amount=amount,
            reason=reason,
            metadata=p.metadata(),
            balance_transaction_id=txn["id"],
        )
        await self._set_source(txn, refund["id"])
        reversal: dict[str, Any] | None = None
        if p.boolean("reverse_transfer") and charge.get("transfer"):
            # A destination charge: the transfer (the payee's part) is reversed in
            # proportion, by the same cumulative largest remainder the ledger uses;
            # ``refund_application_fee`` needs nothing more here, as the sandbox's transfer
            # is already net of the application fee.
            fee = int(charge.get("application_fee_amount") or 0)
            share = amount - proportional_part(
                amount, int(charge["amount"]), fee, int(charge["amount_refunded"])
            )
            if share:
                reversal = await self._reverse(
                    str(charge["transfer"]), share, metadata={}, source_refund=refund["id"]
                )
                refund["transfer_reversal"] = reversal["id"]
        await self.objects.add("refund", refund)
        charge["amount_refunded"] = int(charge["amount_refunded"]) + amount
        charge["refunded"] = charge["amount_refunded"] >= int(charge["amount"])
        charge["refunds"]["data"] = [refund, *charge["refunds"]["data"]]
        await self.objects.save(row, charge)
        await self.emit("refund.created", refund)
        await self.emit("charge.refunded", charge)
        return refund

    async def fail_refund(self, refund_id: str) -> dict[str, Any]:
        """The card issuer sent a refund back (expired or closed card): the money
        returns to the platform balance; ``refund.failed`` and ``refund.updated``."""
        row = await self.load(refund_id, "refund")
        refund = row.body
        if refund["status"] != "succeeded":
            raise PageError(f"Only a succeeded refund can fail (this one is {refund['status']}).")
        amount, currency = int(refund["amount"]), str(refund["currency"])
        txn = await self._txn("refund_failure", amount, currency, source=refund_id)
        previous = {"status": "succeeded", "failure_reason": None}
        refund.update(
            status="failed",
            failure_reason="expired_or_canceled_card",
            failure_balance_transaction=txn["id"],
        )
        await self.objects.save(row, refund)
        charge_row = await self.load(str(refund["charge"]), "charge")
        charge = charge_row.body
        charge["amount_refunded"] = max(int(charge["amount_refunded"]) - amount, 0)
        charge["refunded"] = False
        charge["refunds"]["data"] = [
            refund if r.get("id") == refund_id else r for r in charge["refunds"]["data"]
        ]
        await self.objects.save(charge_row, charge)
        await self.emit("refund.updated", refund, previous=previous)
        await self.emit("refund.failed", refund, previous=previous)
        await self.emit("charge.refund.updated", refund, previous=previous)
        return refund
