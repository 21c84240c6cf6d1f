"""The sandbox's Stripe: transfers to connected accounts (and their reversals) and
those accounts' payouts."""

from __future__ import annotations

from typing import Any, Literal

from payments_sandbox import connect_objects, objects
from payments_sandbox.accounts import ConnectAccounts
from payments_sandbox.core import PageError, format_money
from payments_sandbox.errors import invalid, refused
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params


class TransfersAndPayouts(ConnectAccounts):
    """Transfers to connected accounts (and their reversals) and those accounts' payouts."""

    def _can_receive_transfers(self, account: SandboxObject, *, param: str) -> None:
        capabilities = account.body.get("capabilities") or {}
        if capabilities.get("transfers") != "active":
            raise refused(
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param=param,
            )

    async def create_transfer(self, p: Params) -> dict[str, Any]:
        amount = p.required_integer("amount", minimum=1)
        currency = p.currency()
        assert currency is not None  # noqa: S101 - required
        destination = p.required_text("destination")
        source_transaction = p.text("source_transaction")
        if source_transaction is not None:
            await self.load(source_transaction, "charge", param="source_transaction")
        return await self._transfer(
            amount=amount,
            currency=currency,
            destination=destination,
            description=p.text("description"),
            metadata=p.metadata(),
            transfer_group=p.text("transfer_group"),
            source_transaction=source_transaction,
        )

    async def _transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        description: str | None,
        metadata: dict[str, str],
        transfer_group: str | None,
        source_transaction: str | None,
    ) -> dict[str, Any]:
        """Platform balance -> connected account, refused as Stripe refuses: unknown
        destination, no ``transfers`` capability, not enough available balance."""
        account = await self.load(
            destination, "account", resource="destination", param="destination"
        )
        self._can_receive_transfers(account, param="destination")
        if source_transaction is None and await self.available(None, currency) < amount:
            raise refused(
                "You have insufficient available funds in your Stripe account. Try adding "
                "funds directly to your available balance by creating Charges using the "
                "4000000000000077 test card.",
                code="balance_insufficient",
            )
        txn = await self._txn("transfer", -amount, currency)
        payment_id = objects.new_id("py")
        body = connect_objects.transfer(
            amount=amount,
            currency=currency,
            destination=destination,
            destination_payment=payment_id,
            balance_transaction_id=txn["id"],
            description=description,
            metadata=metadata,
            transfer_group=transfer_group,
            source_transaction=source_transaction,
        )
        await self._add_with_txn("transfer", body, txn)
        await self._txn("payment", amount, currency, source=payment_id, account=destination)
        await self.emit("transfer.created", body)
        await self._automatic_payout(account, amount, currency)
        return body

    async def _automatic_payout(self, account: SandboxObject, amount: int, currency: str) -> None:
        """Express accounts are paid out automatically: the sandbox pays each transfer
        out at once (``payout.created`` on Connect), to be paid or failed by hand."""
        await self._payout(
            account.body["id"],
            amount=amount,
            currency=currency,
            destination=connect_objects.external_account_id(account.body),
            automatic=True,
            description=None,
            metadata={},
        )

    async def reverse_transfer(self, transfer_id: str, p: Params) -> dict[str, Any]:
        """``POST /v1/transfers/{id}/reversals``: money back from the connected account
        to the platform; ``transfer.reversed`` (also for partial reversals)."""
        return await self._reverse(
            transfer_id, p.integer("amount", minimum=1), metadata=p.metadata()
        )

    async def _reverse(
        self,
        transfer_id: str,
        requested: int | None,
        *,
        metadata: dict[str, str],
        source_refund: str | None = None,
    ) -> dict[str, Any]:
        """Reverse (part of) a transfer. The connected account may go negative: Stripe
        reverses a destination charge's transfer up to the charge whatever the payee
        holds (the platform answers for an Express account's negative balance)."""
        row = await self.load(transfer_id, "transfer", account=None)
        transfer = row.body
        remaining = int(transfer["amount"]) - int(transfer["amount_reversed"])
        amount = requested or remaining
        currency = str(transfer["currency"])
        if remaining <= 0:
            raise refused(
                f"Transfer {transfer_id} has already been fully reversed.",
                code=None,
            )
        if amount > remaining:
            raise refused(
                f"Reversal amount ({format_money(amount, currency)}) is greater than the amount "
                f"that can be reversed ({format_money(remaining, currency)}).",
                code="amount_too_large",
                param="amount",
            )
        txn = await self._txn("transfer_refund", amount, currency)
        reversal = connect_objects.transfer_reversal(
            transfer_id=transfer_id,
            amount=amount,
            currency=currency,
            metadata=metadata,
            txn=txn["id"],
        )
        reversal["source_refund"] = source_refund
        await self._add_with_txn("transfer_reversal", reversal, txn)
        await self._txn(
            "payment_refund",
            -amount,
            currency,
            source=transfer.get("destination_payment"),
            account=str(transfer["destination"]),
        )
        previous = {
            "amount_reversed": transfer["amount_reversed"],
            "reversed": transfer["reversed"],
        }
        transfer["amount_reversed"] = int(transfer["amount_reversed"]) + amount
        transfer["reversed"] = transfer["amount_reversed"] >= int(transfer["amount"])
        transfer["reversals"]["data"] = [reversal, *transfer["reversals"]["data"]]
        await self.objects.save(row, transfer)
        await self.emit("transfer.reversed", transfer, previous=previous)
        return reversal

    # ---------------------------------------------------------------- payouts

    async def create_payout(self, p: Params) -> dict[str, Any]:
        """A manual payout of a connected account (``Stripe-Account`` header)."""
        if self.account is None:
            raise invalid(
                "The sandbox pays out connected accounts only: send the Stripe-Account header."
            )
        amount = p.required_integer("amount", minimum=1)
        currency = p.currency()
        assert currency is not None  # noqa: S101 - required
        account = await self.load(self.account, "account")
        if not account.body.get("payouts_enabled"):
            raise refused("Payouts are not enabled for this account.", code="payouts_not_allowed")
        if await self.available(self.account, currency) < amount:
            raise refused(
                "You have insufficient funds in your Stripe account for this transfer. Your "
                "card balance is too low.",
                code="balance_insufficient",
            )
        return await self._payout(
            self.account,
            amount=amount,
            currency=currency,
            destination=connect_objects.external_account_id(account.body),
            automatic=False,
            description=p.text("description"),
            metadata=p.metadata(),
        )

    async def _payout(
        self,
        account_id: str,
        *,
        amount: int,
        currency: str,
        destination: str | None,
        automatic: bool,
        description: str | None,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        txn = await self._txn("payout", -amount, currency, account=account_id)
        body = connect_objects.payout(
            amount=amount,
            currency=currency,
            destination=destination,
            balance_transaction_id=txn["id"],
            automatic=automatic,
            description=description,
            metadata=metadata,
        )
        await self._add_with_txn("payout", body, txn, account=account_id)
        await self.emit("payout.created", body, account=account_id)
        return body

    async def settle_payout(
        self, payout_id: str, outcome: Literal["paid", "failed"]
    ) -> dict[str, Any]:
        """The bank answered: ``payout.paid``, or ``payout.failed`` with the money back
        on the connected account's balance. Connect events (``account`` set)."""
        row = await self.objects.get(payout_id, for_update=True)
        if row is None or row.type != "payout" or row.account is None:
            raise PageError(f"No such payout: {payout_id}")
        payout = row.body
        if payout["status"] not in ("pending", "in_transit"):
            raise PageError(f"This payout is already {payout['status']}.")
        previous = {"status": payout["status"]}
        if outcome == "paid":
            payout.update(status="paid", reconciliation_status="completed")
            payout["trace_id"] = {"status": "supported", "value": objects.random_tail(12)}
        else:
            txn = await self._txn(
                "payout_failure",
                int(payout["amount"]),
                str(payout["currency"]),
                source=payout_id,
                account=row.account,
            )
            payout.update(
                status="failed",
                failure_code="account_closed",
                failure_message="The bank account has been closed.",
                failure_balance_transaction=txn["id"],
            )
        await self.objects.save(row, payout)
        await self.emit("payout.updated", payout, account=row.account, previous=previous)
        await self.emit(f"payout.{outcome}", payout, account=row.account, previous=previous)
        return payout
