"""Stripe events for withdrawals (platform: transfer.*) and payouts (Connect: payout.*)."""

from __future__ import annotations

from datetime import UTC, datetime

from payments_api.kit.clock import stripe_time, utcnow
from payments_api.payout_accounts.repository import PayoutAccountRepository
from payments_api.payouts.models import Withdrawal
from payments_api.payouts.repository import PayoutRepository, WithdrawalRepository
from payments_api.payouts.service import apply_reversal, settle_withdrawal
from payments_api.stripe.objects import Payout, Transfer
from payments_api.webhooks.registry import (
    EventHandler,
    HandlerContext,
    RetryLater,
    StripeEvent,
    reads,
)


async def _withdrawal_for(transfer: Transfer, context: HandlerContext) -> Withdrawal | None:
    repository = WithdrawalRepository(context.session)
    found = await repository.by_transfer(transfer.id)
    if found is not None:
        return found
    raw = transfer.metadata.get("withdrawal_id")
    if raw is not None and raw.isascii() and raw.isdigit():
        return await repository.get(int(raw), for_update=True)
    return None


async def transfer_created(event: StripeEvent, transfer: Transfer, context: HandlerContext) -> None:
    """Settles a withdrawal whose API response was lost (timeout after Stripe acted)."""
    withdrawal = await _withdrawal_for(transfer, context)
    if withdrawal is not None:
        await settle_withdrawal(context.session, withdrawal, ("transferred", transfer.id), utcnow())


async def transfer_reversed(
    event: StripeEvent, transfer: Transfer, context: HandlerContext
) -> None:
    withdrawal = await _withdrawal_for(transfer, context)
    if withdrawal is None:
        return  # not a withdrawal of ours (e.g. a transfer made in the dashboard)
    if withdrawal.status == "pending":
        # The reversal overtook the creation: settle the transfer first, then reverse.
        await settle_withdrawal(context.session, withdrawal, ("transferred", transfer.id), utcnow())
    if withdrawal.status not in ("transferred", "reversed"):
        raise RetryLater(f"withdrawal {withdrawal.id} is {withdrawal.status}")
    await apply_reversal(context.session, withdrawal, transfer.amount_reversed, utcnow())


async def payout_changed(event: StripeEvent, payout: Payout, context: HandlerContext) -> None:
    """payout.created/updated/paid/failed/canceled on a connected account."""
    account_id = event.account
    if not account_id:
        return
    account = await PayoutAccountRepository(context.session).get_by_stripe_account(account_id)
    await PayoutRepository(context.session).upsert_from_event(
        {
            "stripe_payout_id": payout.id,
            "stripe_account_id": account_id,
            "user_id": account.user_id if account else None,
            "amount": payout.amount,
            "currency": payout.currency,
            "status": payout.status,
            "failure_code": payout.failure_code,
            "arrival_date": stripe_time(payout.arrival_date),
            "created": stripe_time(payout.created) or utcnow(),
            "event_created": datetime.fromtimestamp(event.created, UTC),
        }
    )


PLATFORM_HANDLERS: dict[str, EventHandler] = {
    "transfer.created": reads(Transfer, transfer_created),
    "transfer.reversed": reads(Transfer, transfer_reversed),
}
CONNECT_HANDLERS: dict[str, EventHandler] = {
    f"payout.{kind}": reads(Payout, payout_changed)
    for kind in ("created", "updated", "paid", "failed", "canceled")
}
