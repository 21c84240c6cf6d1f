from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base

RUN_STATUSES = ("running", "completed", "failed")
MISMATCH_KINDS = ("missing_in_ledger", "missing_at_stripe", "amount_differs")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class ReconciliationRun(Base):
    """The reconciliation of one UTC day against Stripe. One row per day: a rerun
    replaces the day's snapshots and mismatches (``attempts`` counts the runs)."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(RUN_STATUSES)})", name="status"),
        sa.UniqueConstraint("run_date"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    run_date: Mapped[date] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(16))
    trigger: Mapped[str] = mapped_column(sa.String(16))
    """What started the latest run: api, cli or schedule."""
    requested_by: Mapped[str | None] = mapped_column(sa.String(255))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("1"))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    started_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
    finished_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    stripe_transaction_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    """Balance transactions Stripe reported for the day."""
    ledger_transaction_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    """Ledger transactions of the day that moved ``stripe_balance``."""
    matched_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    mismatch_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    undelivered_events: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=sa.text("'[]'::jsonb")
    )
    """Events of the day Stripe reports undelivered, and whether our inbox has them."""


class ReconciliationSnapshot(Base):
    """Totals of one currency for a run: Stripe's balance against the ledger's mirror
    of it, and the day's movements on both sides."""

    __tablename__ = "reconciliation_snapshots"
    __table_args__ = (sa.UniqueConstraint("run_id", "currency"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE")
    )
    currency: Mapped[str] = mapped_column(sa.String(3))
    stripe_available: Mapped[int] = mapped_column(sa.BigInteger)
    stripe_pending: Mapped[int] = mapped_column(sa.BigInteger)
    ledger_balance: Mapped[int] = mapped_column(sa.BigInteger)
    """Money at Stripe according to the ledger (``stripe_balance`` with its sign flipped)."""
    balance_difference: Mapped[int] = mapped_column(sa.BigInteger)
    """Stripe (available + pending) minus the ledger; payouts to the platform's bank and
    unreconciled items explain it."""
    stripe_day_net: Mapped[int] = mapped_column(sa.BigInteger)
    """Net of the day's balance transactions that the ledger mirrors."""
    ledger_day_net: Mapped[int] = mapped_column(sa.BigInteger)
    """Net effect on the platform's Stripe money of the day's Stripe-caused ledger entries."""
    stripe_excluded_net: Mapped[int] = mapped_column(sa.BigInteger)
    """The day's balance transactions the ledger does not mirror (payouts to the bank)."""
    ledger_unattributed_net: Mapped[int] = mapped_column(sa.BigInteger)
    """The day's ``stripe_balance`` entries naming no Stripe object (manual corrections)."""


class ReconciliationMismatch(Base):
    """One Stripe object on which Stripe and the ledger disagree."""

    __tablename__ = "reconciliation_mismatches"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({_in(MISMATCH_KINDS)})", name="kind"),
        sa.Index("ix_reconciliation_mismatches_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(sa.String(32))
    object_type: Mapped[str] = mapped_column(sa.String(32))
    """charge, stripe_fee, refund, refund_failure, dispute, dispute_reversal, transfer,
    transfer_reversal, application_fee, ..."""
    stripe_object_id: Mapped[str] = mapped_column(sa.String(255))
    currency: Mapped[str] = mapped_column(sa.String(3))
    stripe_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Signed effect on the platform's Stripe balance according to Stripe."""
    ledger_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Signed effect on the platform's Stripe balance according to the ledger."""
    balance_transaction_ids: Mapped[list[str]] = mapped_column(
        JSONB, server_default=sa.text("'[]'::jsonb")
    )
    ledger_transaction_ids: Mapped[list[int]] = mapped_column(
        JSONB, server_default=sa.text("'[]'::jsonb")
    )
    detail: Mapped[str | None] = mapped_column(sa.Text)
