"""The event types this service emits, named ``<resource>.<past-tense verb>``."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    topup_succeeded = "topup.succeeded"
    topup_failed = "topup.failed"
    topup_requires_action = "topup.requires_action"
    payment_method_saved = "payment_method.saved"
    payment_method_detached = "payment_method.detached"
    order_paid = "order.paid"
    order_refunded = "order.refunded"
    escrow_authorized = "escrow.authorized"
    escrow_authorization_released = "escrow.authorization_released"
    escrow_funded = "escrow.funded"
    escrow_accepted = "escrow.accepted"
    escrow_completed = "escrow.completed"
    escrow_cancelled = "escrow.cancelled"
    withdrawal_created = "withdrawal.created"
    withdrawal_paid = "withdrawal.paid"
    withdrawal_failed = "withdrawal.failed"
    payout_account_updated = "payout_account.updated"
    refund_succeeded = "refund.succeeded"
    refund_failed = "refund.failed"
    dispute_created = "dispute.created"
    dispute_closed = "dispute.closed"
    wallet_debited = "wallet.debited"
    wallet_refund_created = "wallet_refund.created"
    wallet_refund_succeeded = "wallet_refund.succeeded"
    wallet_refund_failed = "wallet_refund.failed"
    subscription_created = "subscription.created"
    subscription_updated = "subscription.updated"
    subscription_canceled = "subscription.canceled"
    subscription_trial_will_end = "subscription.trial_will_end"
    invoice_paid = "invoice.paid"
    invoice_payment_failed = "invoice.payment_failed"
    invoice_payment_action_required = "invoice.payment_action_required"
    invoice_refunded = "invoice.refunded"
    balance_low = "balance.low"
    webhook_endpoint_tested = "webhook_endpoint.tested"
    """Sent by ``POST /admin/webhook-endpoints/{id}/test`` to that endpoint only."""


EVENT_PREFIX = "evt"
ENDPOINT_PREFIX = "we"
DELIVERY_PREFIX = "del"
