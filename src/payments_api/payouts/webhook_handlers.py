"""Stripe events for withdrawals (platform: transfer.*) and payouts (Connect: payout.*)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payments_api.kit.clock import utcnow
from payments_api.payout_accounts.repository import PayoutAccountRepository
from payments_api.payouts.repository import PayoutRepository, WithdrawalRepository
from payments_api.payouts.service import apply_reversal, mark_transferred
from payments_api.webhooks.registry import EventHandler, HandlerContext, RetryLater, StripeEvent


async def _withdrawal_for(transfer: dict[str, Any], context: HandlerContext) -> Any:
    repository = WithdrawalRepository(context.session)
    found = await repository.by_transfer(str(transfer.get("id")))
    if found is not None:
        return found
    raw = (transfer.get("metadata") or {}).get("withdrawal_id")
    if isinstance(raw, str) and (raw.isascii() and raw.isdigit()):
        return await repository.get(int(raw), for_update=True)
    return None


async def transfer_created(event: StripeEvent, context: HandlerContext) -> None:
    """Settles a withdrawal whose API response was lost (timeout after Stripe acted)."""
    withdrawal = await _withdrawal_for(event.data_object, context)
    if withdrawal is not None:
        await mark_transferred(context.session, withdrawal, str(event.data_object["id"]), utcnow())


async def transfer_reversed(event: StripeEvent, context: HandlerContext) -> None:
    transfer = event.data_object
    withdrawal = await _withdrawal_for(transfer, context)
    if withdrawal is None:
        return  # not a withdrawal of ours (e.g. a transfer made in the dashboard)
    if withdrawal.status == "pending":
        # The reversal overtook the creation: settle the transfer first, then reverse.
        await mark_transferred(context.session, withdrawal, str(transfer["id"]), utcnow())
    if withdrawal.status not in ("transferred", "reversed"):
        raise RetryLater(f"withdrawal {withdrawal.id} is {withdrawal.status}")
    await apply_reversal(
        context.session, withdrawal, int(transfer.get("amount_reversed") or 0), utcnow()
    )


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


async def payout_changed(event: StripeEvent, context: HandlerContext) -> None:
    """payout.created/updated/paid/failed/canceled on a connected account."""
    payout = event.data_object
    account_id = event.account
    if not account_id:
        return
    account = await PayoutAccountRepository(context.session).get_by_stripe_account(account_id)
    await PayoutRepository(context.session).upsert_from_event(
        {
            "stripe_payout_id": str(payout["id"]),
            "stripe_account_id": account_id,
            "user_id": account.user_id if account else None,
            "amount": int(payout["amount"]),
            "currency": str(payout["currency"]),
            "status": str(payout["status"]),
            "failure_code": payout.get("failure_code"),
            "arrival_date": _ts(payout.get("arrival_date")),
            "created": _ts(payout.get("created")) or utcnow(),
            "event_created": datetime.fromtimestamp(event.created, UTC),
        }
    )


PLATFORM_HANDLERS: dict[str, EventHandler] = {
    "transfer.created": transfer_created,
    "transfer.reversed": transfer_reversed,
}
CONNECT_HANDLERS: dict[str, EventHandler] = {
    f"payout.{kind}": payout_changed
    for kind in ("created", "updated", "paid", "failed", "canceled")
}
