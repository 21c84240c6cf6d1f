"""The events as OpenAPI 3.1 ``webhooks``: one operation per type, its body typed with
the same resource schema the REST API returns, so generated clients parse deliveries
with the types they already have."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI, Header
from pydantic import BaseModel, Field, create_model

from payments_api.disputes.schemas import DisputeRead
from payments_api.escrow.schemas import EscrowRead
from payments_api.events.schemas import BalanceAlertRead, WebhookEndpointRead
from payments_api.events.types import EventType
from payments_api.orders.schemas import OrderRead
from payments_api.payment_methods.schemas import PaymentMethodRead
from payments_api.payout_accounts.schemas import PayoutAccountRead
from payments_api.payouts.schemas import WithdrawalRead
from payments_api.refunds.schemas import RefundRead, WalletRefundRead
from payments_api.subscriptions.schemas import InvoiceRead, SubscriptionRead
from payments_api.wallets.schemas import WalletDebitRead

RESOURCE_BY_PREFIX: dict[str, type[BaseModel]] = {
    "topup": OrderRead,
    "order": OrderRead,
    "payment_method": PaymentMethodRead,
    "escrow": EscrowRead,
    "withdrawal": WithdrawalRead,
    "payout_account": PayoutAccountRead,
    "refund": RefundRead,
    "dispute": DisputeRead,
    "subscription": SubscriptionRead,
    "invoice": InvoiceRead,
    "balance": BalanceAlertRead,
    "webhook_endpoint": WebhookEndpointRead,
    "wallet": WalletDebitRead,
    "wallet_refund": WalletRefundRead,
}

_DESCRIPTIONS: dict[EventType, str] = {
    EventType.topup_succeeded: "A wallet top-up was paid and credited.",
    EventType.topup_failed: "A wallet top-up failed or expired (`status` says which).",
    EventType.topup_requires_action: "An off-session top-up needs the customer (3-D Secure): "
    "`action_url` is where they finish it on-session.",
    EventType.payment_method_saved: "A card was saved for the user (Stripe confirmed the "
    "SetupIntent).",
    EventType.payment_method_detached: "A saved card was removed and detached at Stripe.",
    EventType.order_paid: "An order (catalog, escrow or direct payment) was paid, by card "
    "or from the wallet (`source`); `granted_credit` is the wallet credit it gave the buyer.",
    EventType.order_refunded: "A refund of the order succeeded (to the card, or to the wallet "
    "for `source: wallet`); `refunded_amount` is the total, `credit_taken_back` the credit "
    "taken back so far.",
    EventType.escrow_authorized: "The card holds the escrow's money (capture_method "
    "`manual`): `authorized_amount` is reserved at the card, nothing is captured or "
    "available yet; accepting captures it.",
    EventType.escrow_authorization_released: "The card authorization of an escrow ended "
    "uncaptured: released after a cancel (`capture_status` `released`) or expired at Stripe "
    "(`expired`, the escrow is then cancelled). The card was never charged.",
    EventType.escrow_funded: "The escrow holds the customer's money (wallet or card; for an "
    "authorization, what was captured: `hold_amount` and the fees follow a partial capture).",
    EventType.escrow_accepted: "The payee accepted the job.",
    EventType.escrow_completed: "The job was completed and the payee credited.",
    EventType.escrow_cancelled: "The escrow was cancelled and its money returned.",
    EventType.withdrawal_created: "A payee asked to withdraw; the amount is held.",
    EventType.withdrawal_paid: "The withdrawal reached the payee's connected account "
    "(status `transferred`); Stripe pays it out to the bank on the account's schedule.",
    EventType.withdrawal_failed: "Stripe refused the transfer; the amount is available again.",
    EventType.payout_account_updated: "Stripe reported a change of the payee's account.",
    EventType.refund_succeeded: "A refund reached the customer.",
    EventType.refund_failed: "A refund failed; the money stays where it was.",
    EventType.dispute_created: "A customer disputed a payment.",
    EventType.dispute_closed: "A dispute was won, lost or closed.",
    EventType.wallet_debited: "A service debited the user's wallet for usage.",
    EventType.wallet_refund_created: "The customer cashed out wallet money to their cards: "
    "the amount left `available` for `refunding`, one refund per top-up charge (each also "
    "sends `refund.succeeded`/`refund.failed` with origin `wallet`).",
    EventType.wallet_refund_succeeded: "Stripe confirmed every refund of the cash-out.",
    EventType.wallet_refund_failed: "The cash-out ended with refunds that failed (`status` "
    "`failed`: none reached the cards; `partially_failed`: some did); what failed is back "
    "in `available` (`failed_amount`).",
    EventType.subscription_created: "A subscription was created at Stripe (any status, "
    "`incomplete` until its first invoice is paid).",
    EventType.subscription_updated: "Stripe changed the subscription's status, plan or "
    "cancel-at-period-end; `entitled` says whether it grants the plan now.",
    EventType.subscription_canceled: "The subscription ended (canceled now, at period end, "
    "or after unpaid renewals).",
    EventType.subscription_trial_will_end: "The trial ends in three days (Stripe's notice).",
    EventType.invoice_paid: "A subscription invoice was paid; revenue booked and the "
    "plan's wallet credit (if any) given, once per invoice.",
    EventType.invoice_payment_failed: "A subscription invoice's payment failed (one event "
    "per attempt).",
    EventType.invoice_payment_action_required: "The customer must authenticate the "
    "invoice's payment (3-D Secure); `hosted_invoice_url` lets them.",
    EventType.invoice_refunded: "A refund of a subscription invoice succeeded; "
    "`refunded_amount` is the total and the plan credit was taken back in proportion.",
    EventType.balance_low: "Available fell below the user's threshold (once per crossing).",
    EventType.webhook_endpoint_tested: "A test event an admin sent to one endpoint.",
}


def resource_of(event_type: EventType) -> type[BaseModel]:
    return RESOURCE_BY_PREFIX[event_type.value.partition(".")[0]]


def _camel(event_type: EventType) -> str:
    return "".join(part.capitalize() for part in event_type.value.replace(".", "_").split("_"))


def event_model(event_type: EventType) -> type[BaseModel]:
    name = _camel(event_type)
    data_fields: dict[str, Any] = {"object": (resource_of(event_type), ...)}
    data = create_model(f"{name}EventData", **data_fields)
    fields: dict[str, Any] = {
        "id": (str, Field(examples=["evt_42"])),
        "object": (Literal["event"], "event"),
        "type": (Literal.__getitem__(event_type.value), event_type.value),
        "created_at": (datetime, ...),
        "user_ids": (list[str], ...),
        "data": (data, ...),
    }
    model: type[BaseModel] = create_model(
        f"{name}Event", __doc__=_DESCRIPTIONS[event_type], **fields
    )
    return model


def declare_webhooks(app: FastAPI) -> None:
    for event_type in EventType:
        model = event_model(event_type)

        async def receive(
            body: Any,
            webhook_id: str = Header(description="The event id: drop a delivery you have."),
            webhook_timestamp: str = Header(description="Unix seconds of this attempt."),
            webhook_signature: str = Header(
                description="`v1,<base64 HMAC-SHA256>`, space-separated (two during a "
                "secret rotation)."
            ),
        ) -> None:  # pragma: no cover - documentation only, never routed
            return None

        receive.__annotations__["body"] = model
        app.webhooks.post(
            event_type.value,
            summary=event_type.value,
            description=_DESCRIPTIONS[event_type]
            + " Signed per Standard Webhooks; answer 2xx within 10 seconds.",
            operation_id=f"on{_camel(event_type)}",
            # Not "events": generators that read webhooks too (Swift) would write the
            # feeds' API and these to one file.
            tags=["outgoing-events"],
            status_code=200,
        )(receive)
