"""Transfers to connected accounts and their payouts."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import PayoutList, Transfer


class PayoutCalls(GatewayBase):
    async def create_transfer(self, params: dict[str, Any], *, idempotency_key: str) -> Transfer:
        """Move platform balance to a connected account (key
        ``<namespace>:withdrawal:{id}``: a retry after a timeout returns the same
        Transfer, never a second one)."""
        return await self._request(
            Transfer, "transfers.create", params=params, idempotency_key=idempotency_key
        )

    async def list_payouts(
        self,
        *,
        stripe_account: str,
        limit: int,
        status: str | None,
        starting_after: str | None = None,
    ) -> PayoutList:
        """A page of the connected account's payouts (``Stripe-Account`` header), newest
        first, after the payout ``starting_after`` (Stripe's own cursor)."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if starting_after is not None:
            params["starting_after"] = starting_after
        return await self._request(
            PayoutList,
            "payouts.list",
            params=params,
            stripe_account=stripe_account,
            client_ids=frozenset({"starting_after"}),
        )
