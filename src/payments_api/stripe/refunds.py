"""Refunds, disputes, balance transactions and events (reconciliation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import (
    ApplicationFee,
    BalanceTransaction,
    Charge,
    Dispute,
    Refund,
    UndeliveredEvent,
)

# A reconciliation window holds at most this many balance transactions; beyond it the run
# fails loudly instead of paging for ever (raise it through the caller's `limit`).
DEFAULT_LIST_LIMIT = 100_000


class ListTooLong(Exception):
    """A listing went past the caller's bound (the window holds too many objects)."""


def _created_range(created_gte: datetime, created_lt: datetime) -> dict[str, int]:
    return {"gte": int(created_gte.timestamp()), "lt": int(created_lt.timestamp())}


class RefundCalls(GatewayBase):
    async def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        reason: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
        reverse_transfer: bool = False,
        refund_application_fee: bool = False,
    ) -> Refund:
        """Refund (part of) a PaymentIntent. Keys are ``<namespace>:refund:{refund_id}``: a retry
        after a timeout reaches the refund Stripe already made, never a second one.

        A destination charge is refunded with ``reverse_transfer`` (the payee's part comes
        back from the connected account, in proportion) and ``refund_application_fee``
        (the platform gives back its fee, in proportion)."""
        params: Any = {"payment_intent": payment_intent, "amount": amount, "metadata": metadata}
        if reason is not None:
            params["reason"] = reason
        if reverse_transfer:
            params["reverse_transfer"] = True
        if refund_application_fee:
            params["refund_application_fee"] = True
        return await self._request(
            Refund, "refunds.create", params=params, idempotency_key=idempotency_key
        )

    async def list_refunds(
        self, *, charge: str | None = None, payment_intent: str | None = None
    ) -> list[Refund]:
        """Every refund of a charge or PaymentIntent (auto-paginated; a charge has few)."""
        params: Any = {"limit": 100}
        if charge is not None:
            params["charge"] = charge
        if payment_intent is not None:
            params["payment_intent"] = payment_intent
        return await self._list_every(Refund, "refunds.list", params)

    async def retrieve_charge(self, charge_id: str) -> Charge:
        return await self._request(Charge, "charges.retrieve", charge_id)

    async def retrieve_application_fee(self, fee_id: str) -> ApplicationFee:
        """An application fee with ``originating_transaction`` (the platform's destination
        charge) expanded: reconciliation ties a later fee refund to its payment by it."""
        return await self._request(
            ApplicationFee,
            "application_fees.retrieve",
            fee_id,
            params={"expand": ["originating_transaction"]},
        )

    async def retrieve_dispute(self, dispute_id: str) -> Dispute:
        """A dispute with its balance transactions (Stripe always includes them)."""
        return await self._request(Dispute, "disputes.retrieve", dispute_id)

    async def list_balance_transactions(
        self,
        *,
        created_gte: datetime,
        created_lt: datetime,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[BalanceTransaction]:
        """The platform's balance transactions created in ``[created_gte, created_lt)``,
        every page of them, with ``source`` expanded (a charge's PaymentIntent, a transfer
        reversal's transfer). Raises :class:`ListTooLong` past ``limit`` objects."""
        params: Any = {
            "created": _created_range(created_gte, created_lt),
            "limit": 100,
            "expand": ["data.source"],
        }

        async def collect() -> list[BalanceTransaction]:
            page = await self._client.v1.balance_transactions.list_async(params=params)
            found: list[BalanceTransaction] = []
            async for transaction in page.auto_paging_iter():
                found.append(
                    self._typed("balance_transactions.list", BalanceTransaction, transaction)
                )
                if len(found) > limit:
                    raise ListTooLong(f"more than {limit} balance transactions in the window")
            return found

        return await self._call("balance_transactions.list", collect)

    async def list_undelivered_events(
        self, *, created_gte: datetime, created_lt: datetime, limit: int = 1_000
    ) -> list[UndeliveredEvent]:
        """Events Stripe could not deliver to at least one endpoint (``delivery_success=
        false``) in the window, newest first, at most ``limit`` of them."""
        params: Any = {
            "delivery_success": False,
            "created": _created_range(created_gte, created_lt),
            "limit": 100,
        }

        async def collect() -> list[UndeliveredEvent]:
            page = await self._client.v1.events.list_async(params=params)
            found: list[UndeliveredEvent] = []
            async for event in page.auto_paging_iter():
                found.append(self._typed("events.list", UndeliveredEvent, event))
                if len(found) >= limit:
                    break
            return found

        return await self._call("events.list", collect)
