from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
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
        CheckConstraint(f"kind IN ({_KINDS})", name="kind"),
        CheckConstraint(
            f"(owner_user_id IS NULL) = (kind IN ({_PLATFORM}))", name="owner_matches_kind"
        ),
        CheckConstraint("shard_count BETWEEN 1 AND 256", name="shard_count"),
        CheckConstraint("shard_count = 1 OR may_go_negative", name="sharded_may_go_negative"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        UniqueConstraint("owner_user_id", "kind", "currency"),
        UniqueConstraint("id", "currency"),
        Index(
            "ix_ledger_accounts_platform_kind_currency",
            "kind",
            "currency",
            unique=True,
            postgresql_where=text("owner_user_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    owner_user_id: Mapped[str | None] = mapped_column(String(255), ForeignKey("users.id"))
    """The user owning the account; NULL for platform accounts."""
    kind: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    may_go_negative: Mapped[bool] = mapped_column(Boolean)
    """Platform accounts only; a user's available may go negative only via a dispute."""
    shard_count: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    """How many balance rows the cached balance is spread over (hot platform accounts)."""


class LedgerBalance(Base):
    """Cached balance of an account (or of one shard of it), updated with the postings."""

    __tablename__ = "ledger_balances"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"]
        ),
        CheckConstraint("shard >= 0", name="shard"),
    )

    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(32))
    """Copied from the account so the non-negative trigger needs no join."""
    may_go_negative: Mapped[bool] = mapped_column(Boolean)
    balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class LedgerTransaction(TimestampMixin, Base):
    """A balanced set of postings with its cause. Append-only (triggers refuse changes)."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint(f"cause_type IN ({_CAUSES})", name="cause_type"),
        UniqueConstraint("cause_key"),
        UniqueConstraint("reverses_transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    type: Mapped[str] = mapped_column(String(48))
    """Business meaning: topup, escrow_hold, adjustment, reversal, ..."""
    cause_type: Mapped[str] = mapped_column(String(32))
    cause_key: Mapped[str] = mapped_column(String(255))
    """Unique key of the cause (e.g. ``stripe:evt_123``): a cause applies at most once."""
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    reverses_transaction_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id")
    )
    """The transaction this one reverses (each can be reversed at most once)."""


class LedgerPosting(TimestampMixin, Base):
    """One signed movement on one account. Append-only."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"]
        ),
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_ledger_postings_account_id_id", "account_id", "id"),
        Index("ix_ledger_postings_transaction_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_transactions.id"))
    account_id: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Signed minor units; the postings of a transaction sum to zero per currency."""
