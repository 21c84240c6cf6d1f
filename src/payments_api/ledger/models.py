from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin
from payments_api.ledger.kinds import PLATFORM_KINDS, AccountKind, CauseType

_KINDS = ", ".join(f"'{k.value}'" for k in AccountKind)
_PLATFORM = ", ".join(f"'{k.value}'" for k in sorted(PLATFORM_KINDS))
_CAUSES = ", ".join(f"'{c.value}'" for c in CauseType)


class LedgerAccount(TimestampMixin, Base):
    """A ledger account: one per (user, kind, currency) or (platform kind, currency)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="kind"),
        sa.CheckConstraint(
            f"(owner_user_id IS NULL) = (kind IN ({_PLATFORM}))", name="owner_matches_kind"
        ),
        sa.CheckConstraint("shard_count BETWEEN 1 AND 256", name="shard_count"),
        sa.CheckConstraint("shard_count = 1 OR may_go_negative", name="sharded_may_go_negative"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        sa.UniqueConstraint("owner_user_id", "kind", "currency"),
        sa.UniqueConstraint("id", "currency"),
        sa.Index(
            "ix_ledger_accounts_platform_kind_currency",
            "kind",
            "currency",
            unique=True,
            postgresql_where=sa.text("owner_user_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    owner_user_id: Mapped[str | None] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    """The user owning the account; NULL for platform accounts."""
    kind: Mapped[str] = mapped_column(sa.String(32))
    currency: Mapped[str] = mapped_column(sa.String(3))
    may_go_negative: Mapped[bool] = mapped_column(sa.Boolean)
    """Platform accounts only; a user's available may go negative only via a dispute."""
    shard_count: Mapped[int] = mapped_column(sa.SmallInteger, server_default=sa.text("1"))
    """How many balance rows the cached balance is spread over (hot platform accounts)."""


class LedgerBalance(Base):
    """Cached balance of an account (or of one shard of it), updated with the postings."""

    __tablename__ = "ledger_balances"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"]
        ),
        sa.CheckConstraint("shard >= 0", name="shard"),
    )

    account_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    shard: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    kind: Mapped[str] = mapped_column(sa.String(32))
    """Copied from the account so the non-negative trigger needs no join."""
    may_go_negative: Mapped[bool] = mapped_column(sa.Boolean)
    balance: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))


class LedgerTransaction(TimestampMixin, Base):
    """A balanced set of postings with its cause. Append-only (triggers refuse changes)."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        sa.CheckConstraint(f"cause_type IN ({_CAUSES})", name="cause_type"),
        sa.UniqueConstraint("cause_key"),
        sa.UniqueConstraint("reverses_transaction_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(48))
    """Business meaning: topup, escrow_hold, adjustment, reversal, ..."""
    cause_type: Mapped[str] = mapped_column(sa.String(32))
    cause_key: Mapped[str] = mapped_column(sa.String(255))
    """Unique key of the cause (e.g. ``stripe:evt_123``): a cause applies at most once."""
    description: Mapped[str | None] = mapped_column(sa.Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=sa.text("'{}'::jsonb")
    )
    reverses_transaction_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("ledger_transactions.id")
    )
    """The transaction this one reverses (each can be reversed at most once)."""


class LedgerPosting(TimestampMixin, Base):
    """One signed movement on one account. Append-only."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"]
        ),
        sa.CheckConstraint("amount <> 0", name="amount_nonzero"),
        sa.Index("ix_ledger_postings_account_id_id", "account_id", "id"),
        sa.Index("ix_ledger_postings_transaction_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("ledger_transactions.id")
    )
    account_id: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    """Signed minor units; the postings of a transaction sum to zero per currency."""
