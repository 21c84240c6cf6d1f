"""Connect events that update a payee's payout account (Connect webhook endpoint)."""

from __future__ import annotations

import logging

from payments_api.payout_accounts.service import ConnectService
from payments_api.stripe.objects import Account
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent, reads

log = logging.getLogger(__name__)


async def account_updated(event: StripeEvent, account: Account, context: HandlerContext) -> None:
    """Store the account state the event carries, unless newer state is stored.

    An older event (by ``event.created``) is acknowledged and changes nothing, so
    out-of-order deliveries end in the newest state. The payload is trusted as it is
    (the signature was verified); no Stripe call is made inside the transaction.
    """
    if account.object != "account":
        log.warning("account.updated %s carries no account object; ignored", event.id)
        return
    if event.account is not None and event.account != account.id:
        log.warning("account.updated %s: event.account differs from the object; ignored", event.id)
        return
    service = ConnectService(context.session, context.stripe, context.settings)
    await service.apply_account_event(event_id=event.id, created=event.created, account=account)


HANDLERS: dict[str, EventHandler] = {
    "account.updated": reads(Account, account_updated),
}
