from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class EarningSource(StrEnum):
    escrow = "escrow"
    """A completed escrow (a job settled to the payee's available balance)."""
    payment = "payment"
    """A direct payment to the payee (tip, pay-per-request), recorded by that domain."""


_SOURCES = ", ".join(f"'{s.value}'" for s in EarningSource)


class Earning(TimestampMixin, Base):
    """One amount a payee earned: only their take, never the customer's price or fees.

    Written in the same database transaction as the ledger transaction that credited
    the payee, once per source (``source_type``, ``source_id``).
    """

    __tablename__ = "earnings"
    __table_args__ = (
        sa.CheckConstraint(f"source_type IN ({_SOURCES})", name="source_type"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        sa.CheckConstraint("amount >= 0", name="amount_nonnegative"),
        sa.UniqueConstraint("source_type", "source_id"),
        # Serves both the newest-first listing and the per-payee summary.
        sa.Index("ix_earnings_payee_id_earned_at_id", "payee_id", "earned_at", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    payee_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    source_type: Mapped[str] = mapped_column(sa.String(16))
    source_id: Mapped[str] = mapped_column(sa.String(255))
    """Public id of the source: ``esc_12`` for an escrow, ``pi_...`` for a payment."""
    escrow_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("escrows.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    """The payee's take in minor units."""
    currency: Mapped[str] = mapped_column(sa.String(3))
    reference: Mapped[str | None] = mapped_column(sa.String(255))
    project_id: Mapped[str | None] = mapped_column(sa.String(255))
    session_id: Mapped[str | None] = mapped_column(sa.String(255))
    earned_at: Mapped[datetime] = mapped_column()
    """When the take became the payee's (escrow completion, payment confirmation)."""
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("ledger_transactions.id")
    )
    """The ledger transaction that credited the payee, when it went through the ledger."""


ROLLUP_BUCKET_MINUTES = 15
"""Width of an ``earnings_rollups`` bucket. Every IANA zone in use today has a UTC offset
that is a whole multiple of 15 minutes, so a local midnight is a bucket boundary."""
ROLLUP_BUCKET_ORIGIN = "1970-01-01 00:00:00+00"
"""Buckets are aligned on UTC: a bucket starts at a Unix time that is a whole multiple of
the width (migration ``0018_rollup_bucket_floor``; ``date_bin`` misplaces instants before
its origin on some PostgreSQL versions)."""
NO_PROJECT = ""
"""``project_id`` of a rollup of entries without a project (the key must be NOT NULL).
An entry whose project id is the empty string shares it; the summary filtered on
``project_id=''`` is therefore computed from the entries themselves."""

_BUCKET_ALIGNED = f"extract(epoch FROM bucket_start) % {ROLLUP_BUCKET_MINUTES * 60} = 0"


class EarningsRollup(Base):
    """The sum and count of a payee's entries per currency and project in one 15-minute
    UTC bucket of ``earned_at``: the summary's windows read these instead of the entries.

    Kept by the ``earnings_rollup`` trigger on ``earnings`` (migration
    ``0011_earnings_rollups``) in the transaction that writes the entry, whatever wrote it.
    """

    __tablename__ = "earnings_rollups"
    __table_args__ = (
        sa.CheckConstraint(_BUCKET_ALIGNED, name="bucket_aligned"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        sa.CheckConstraint("amount >= 0", name="amount_nonnegative"),
        sa.CheckConstraint("entries > 0", name="entries_positive"),
    )

    # Primary key order: the summary reads one payee's buckets in a time range, across
    # (or filtered to) currencies and projects.
    payee_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("users.id"), primary_key=True
    )
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    entries: Mapped[int] = mapped_column(sa.BigInteger)


class EarningsTotal(Base):
    """All-time sum and count of a payee's entries per currency and project (so
    ``all_time`` does not add up years of buckets). Kept by the same trigger."""

    __tablename__ = "earnings_totals"
    __table_args__ = (
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        sa.CheckConstraint("amount >= 0", name="amount_nonnegative"),
        sa.CheckConstraint("entries > 0", name="entries_positive"),
    )

    payee_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("users.id"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    entries: Mapped[int] = mapped_column(sa.BigInteger)
