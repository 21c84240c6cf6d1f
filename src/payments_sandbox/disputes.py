"""The sandbox's Stripe: card disputes, opened on a charge, answered, won or lost."""

from __future__ import annotations

from typing import Any, Literal

from payments_sandbox import objects
from payments_sandbox.core import PageError, format_money
from payments_sandbox.errors import refused
from payments_sandbox.params import Params
from payments_sandbox.transfers import TransfersAndPayouts

OPEN_DISPUTE_STATUSES = ("warning_needs_response", "needs_response", "under_review")


class Disputes(TransfersAndPayouts):
    """Card disputes: opened on a charge, answered, won or lost."""

    async def open_dispute(self, charge_id: str, amount: int | None, reason: str) -> dict[str, Any]:
        """The cardholder's bank disputes a charge: the amount and Stripe's dispute
        fee leave the platform balance; ``charge.dispute.created`` (+ funds_withdrawn)."""
        row = await self.load(charge_id, "charge", account=None)
        charge = row.body
        if charge["status"] != "succeeded":
            raise PageError("Only a succeeded charge can be disputed.")
        if charge.get("disputed"):
            raise PageError("This charge is already disputed.")
        # The card network disputes what is still on the card: the unrefunded part.
        remaining = int(charge["amount"]) - int(charge.get("amount_refunded") or 0)
        amount = amount or remaining
        if not 0 < amount <= remaining:
            raise PageError(
                "The disputed amount must be between 1 and the unrefunded amount "
                f"({format_money(remaining, str(charge['currency']))})."
            )
        currency = str(charge["currency"])
        txn = await self._txn(
            "adjustment",
            -amount,
            currency,
            category="dispute",
            fee=objects.dispute_fee(currency),
            fee_description="Dispute fee",
            description=f"Chargeback withdrawal for {charge_id}",
        )
        dispute = objects.dispute(
            charge_body=charge, amount=amount, reason=reason, transactions=[txn]
        )
        await self._set_source(txn, dispute["id"])
        dispute["balance_transactions"] = [txn]
        await self.objects.add("dispute", dispute)
        charge["disputed"] = True
        await self.objects.save(row, charge)
        await self.emit("charge.dispute.created", dispute)
        await self.emit("charge.dispute.funds_withdrawn", dispute)
        return dispute

    async def close_dispute(
        self, dispute_id: str, outcome: Literal["won", "lost"]
    ) -> dict[str, Any]:
        """The bank decided. Won: the amount comes back (``funds_reinstated``); lost:
        it is gone for good. Either way ``charge.dispute.closed``."""
        row = await self.load(dispute_id, "dispute", account=None)
        dispute = row.body
        if dispute["status"] not in OPEN_DISPUTE_STATUSES:
            raise refused(
                f"This dispute is already closed ({dispute['status']}).",
                code=None,
            )
        previous = {"status": dispute["status"]}
        dispute["status"] = outcome
        dispute["is_charge_refundable"] = False
        if outcome == "won":
            txn = await self._txn(
                "adjustment",
                int(dispute["amount"]),
                str(dispute["currency"]),
                category="dispute_reversal",
                source=dispute_id,
                description=f"Chargeback reversal for {dispute['charge']}",
            )
            dispute["balance_transactions"] = [*dispute["balance_transactions"], txn]
        await self.objects.save(row, dispute)
        if outcome == "won":
            await self.emit("charge.dispute.funds_reinstated", dispute, previous=previous)
        await self.emit("charge.dispute.closed", dispute, previous=previous)
        return dispute

    async def update_dispute(self, dispute_id: str, p: Params) -> dict[str, Any]:
        """Evidence, as Stripe's test mode reads it: ``winning_evidence`` or
        ``losing_evidence`` in ``evidence[uncategorized_text]`` decides the outcome
        when submitted (``submit`` defaults to true)."""
        row = await self.load(dispute_id, "dispute", account=None)
        dispute = row.body
        if dispute["status"] not in OPEN_DISPUTE_STATUSES:
            raise refused("This dispute is already closed.", code=None)
        text = p.text("evidence.uncategorized_text")
        if text is not None:
            dispute["evidence"]["uncategorized_text"] = text
        dispute["metadata"] = {**dispute.get("metadata", {}), **p.metadata()}
        submit = p.boolean("submit", default=True)
        if submit:
            dispute["evidence_details"]["submission_count"] += 1
            dispute["evidence_details"]["has_evidence"] = True
        await self.objects.save(row, dispute)
        if submit:
            if text == "winning_evidence":
                return await self.close_dispute(dispute_id, "won")
            if text == "losing_evidence":
                return await self.close_dispute(dispute_id, "lost")
            previous = {"status": dispute["status"]}
            dispute["status"] = "under_review"
            await self.objects.save(row, dispute)
            await self.emit("charge.dispute.updated", dispute, previous=previous)
        return dispute
