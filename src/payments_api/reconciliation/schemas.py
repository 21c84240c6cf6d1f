from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.kit.dates import IsoDate


class ReconciliationRunCreate(BaseModel):
    date: IsoDate | None = Field(
        None,
        description="The UTC day to reconcile; omit for yesterday. Rerunning a day replaces "
        "its result.",
        examples=["2026-11-22"],
    )


class SnapshotRead(BaseModel):
    """One currency: Stripe's balance against the ledger's mirror, and the day's flows."""

    currency: str = Field(examples=["usd"])
    stripe_available: int
    stripe_pending: int
    ledger_balance: int = Field(
        description="Money at Stripe according to the ledger (stripe_balance, sign flipped)."
    )
    balance_difference: int = Field(
        description="stripe_available + stripe_pending - ledger_balance. Payouts to the "
        "platform's bank (not in the ledger) and the mismatches explain it."
    )
    stripe_day_net: int = Field(description="Net of the day's mirrored balance transactions.")
    ledger_day_net: int = Field(description="Net of the day's Stripe-caused ledger entries.")
    stripe_excluded_net: int = Field(
        description="The day's balance transactions the ledger does not mirror (payouts)."
    )
    ledger_unattributed_net: int = Field(
        description="The day's stripe_balance entries naming no Stripe object (corrections)."
    )


class MismatchRead(BaseModel):
    kind: Literal["missing_in_ledger", "missing_at_stripe", "amount_differs"]
    object_type: str = Field(
        description="charge, stripe_fee, refund, refund_failure, dispute, dispute_reversal, "
        "transfer, transfer_reversal, application_fee, ...",
        examples=["refund"],
    )
    stripe_object_id: str = Field(examples=["re_3MtwBw"])
    currency: str
    stripe_amount: int | None = Field(
        description="Signed effect on the platform's Stripe money per Stripe."
    )
    ledger_amount: int | None = Field(description="The same per the ledger.")
    balance_transaction_ids: list[str]
    ledger_transaction_ids: list[str] = Field(examples=[["ltx_17"]])


class UndeliveredEventRead(BaseModel):
    """An event Stripe reports it could not deliver to at least one endpoint."""

    id: str = Field(examples=["evt_1NG8Du2eZvKYlo2CUI79vXWy"])
    type: str
    created: dt.datetime
    in_inbox: bool = Field(
        description="Our inbox has it (replay it with POST /api/v1/admin/webhook-events/"
        "{id}/replay); if not, resend it from the Stripe dashboard."
    )
    inbox_status: str | None = None


class ReconciliationRunSummary(BaseModel):
    id: str = Field(examples=["rec_3"])
    object: Literal["reconciliation_run"] = "reconciliation_run"
    date: dt.date
    status: Literal["running", "completed", "failed"]
    trigger: str = Field(description="api, cli or schedule.")
    requested_by: str | None = None
    attempts: int = Field(description="Runs of this day so far (a rerun replaces the result).")
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    error_code: str | None = None
    stripe_transaction_count: int
    ledger_transaction_count: int
    matched_count: int
    mismatch_count: int


class ReconciliationRunRead(ReconciliationRunSummary):
    window_start: dt.datetime
    window_end: dt.datetime
    snapshots: list[SnapshotRead]
    mismatches: list[MismatchRead]
    undelivered_events: list[UndeliveredEventRead]


class ReconciliationRunList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ReconciliationRunSummary]
    has_more: bool
