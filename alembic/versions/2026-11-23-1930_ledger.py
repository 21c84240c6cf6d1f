"""ledger: accounts, sharded cached balances, append-only balanced transactions

Revision ID: 0002_ledger
Revises: 0001_users
Create Date: 2026-11-23 18:46:03.955149+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_ledger"
down_revision: str | None = "0001_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ledger's rules, enforced by PostgreSQL itself so that no code path (a bug, a
# manual psql session) can break them. The application checks them first to answer
# with clear problems; these are the backstop.
INVARIANT_TRIGGERS = [
    # Every settlement rewrites a few balance rows; free space on their pages lets
    # PostgreSQL update them in place (HOT) instead of piling up dead versions that
    # the shard pick of the hot platform accounts would have to read past.
    "ALTER TABLE ledger_balances SET (fillfactor = 50)",
    # 1. Append-only: transactions and postings are never updated or deleted.
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only; post a reversing transaction instead', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE
    ON ledger_transactions FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE
    ON ledger_postings FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    # 2. Every transaction has >= 2 postings summing to zero per currency, checked at
    #    commit (deferred), when all of its postings are in.
    """
    CREATE FUNCTION ledger_assert_balanced(txn bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      IF (SELECT count(*) FROM ledger_postings WHERE transaction_id = txn) < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has fewer than two postings', txn
          USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transactions_balanced_check';
      END IF;
      IF EXISTS (SELECT 1 FROM ledger_postings WHERE transaction_id = txn
                 GROUP BY currency HAVING sum(amount) <> 0) THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', txn
          USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transactions_balanced_check';
      END IF;
    END $$
    """,
    """
    CREATE FUNCTION ledger_check_transaction_balanced() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM ledger_assert_balanced(NEW.id);
      RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION ledger_check_posting_balanced() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM ledger_assert_balanced(NEW.transaction_id);
      RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT
    ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_balanced()
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT
    ON ledger_postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_posting_balanced()
    """,
    # 3. A balance that may not go negative never decreases below zero, except a
    #    user's available during the dispute path, which sets
    #    payments.allow_negative_available for the duration of that one posting.
    """
    CREATE FUNCTION ledger_check_nonnegative() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.balance < 0 AND NEW.balance < OLD.balance AND NOT NEW.may_go_negative
         AND NOT (NEW.kind = 'available'
                  AND coalesce(current_setting('payments.allow_negative_available', true), '')
                      = 'on')
      THEN
        RAISE EXCEPTION 'balance of ledger account % would go negative', NEW.account_id
          USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_balances_nonnegative_check';
      END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER ledger_balances_nonnegative BEFORE UPDATE OF balance
    ON ledger_balances FOR EACH ROW EXECUTE FUNCTION ledger_check_nonnegative()
    """,
    """
    CREATE TRIGGER admin_audit_log_append_only BEFORE UPDATE OR DELETE
    ON admin_audit_log FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    # Shard rows are created with the account and never removed.
    """
    CREATE TRIGGER ledger_balances_no_delete BEFORE DELETE
    ON ledger_balances FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
]

DROP_TRIGGERS = [
    "DROP TRIGGER ledger_balances_no_delete ON ledger_balances",
    "DROP TRIGGER admin_audit_log_append_only ON admin_audit_log",
    "DROP TRIGGER ledger_balances_nonnegative ON ledger_balances",
    "DROP FUNCTION ledger_check_nonnegative()",
    "DROP TRIGGER ledger_postings_balanced ON ledger_postings",
    "DROP TRIGGER ledger_transactions_balanced ON ledger_transactions",
    "DROP FUNCTION ledger_check_posting_balanced()",
    "DROP FUNCTION ledger_check_transaction_balanced()",
    "DROP FUNCTION ledger_assert_balanced(bigint)",
    "DROP TRIGGER ledger_postings_append_only ON ledger_postings",
    "DROP TRIGGER ledger_transactions_append_only ON ledger_transactions",
    "DROP FUNCTION ledger_refuse_change()",
]


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "admin_audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("actor_id", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=255), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("admin_audit_log_pkey")),
    )
    op.create_index(
        "ix_admin_audit_log_target_type_target_id",
        "admin_audit_log",
        ["target_type", "target_id"],
        unique=False,
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("cause_type", sa.String(length=32), nullable=False),
        sa.Column("cause_key", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("reverses_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "cause_type IN ('stripe_event', 'escrow', 'withdrawal', 'admin_adjustment', 'reversal', 'system')",
            name=op.f("ledger_transactions_cause_type_check"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("ledger_transactions_reverses_transaction_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("ledger_transactions_pkey")),
        sa.UniqueConstraint("cause_key", name=op.f("ledger_transactions_cause_key_key")),
        sa.UniqueConstraint(
            "reverses_transaction_id", name=op.f("ledger_transactions_reverses_transaction_id_key")
        ),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("owner_user_id", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("may_go_negative", sa.Boolean(), nullable=False),
        sa.Column("shard_count", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(owner_user_id IS NULL) = (kind IN ('adjustments', 'disputes', 'platform_fees', 'processing_fees', 'sales', 'stripe_balance'))",
            name=op.f("ledger_accounts_owner_matches_kind_check"),
        ),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ledger_accounts_currency_check")),
        sa.CheckConstraint(
            "kind IN ('available', 'escrow', 'withdrawing', 'platform_fees', 'stripe_balance', 'processing_fees', 'disputes', 'adjustments', 'sales')",
            name=op.f("ledger_accounts_kind_check"),
        ),
        sa.CheckConstraint(
            "shard_count = 1 OR may_go_negative",
            name=op.f("ledger_accounts_sharded_may_go_negative_check"),
        ),
        sa.CheckConstraint(
            "shard_count BETWEEN 1 AND 256", name=op.f("ledger_accounts_shard_count_check")
        ),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["users.id"], name=op.f("ledger_accounts_owner_user_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("ledger_accounts_pkey")),
        sa.UniqueConstraint("id", "currency", name=op.f("ledger_accounts_id_currency_key")),
        sa.UniqueConstraint(
            "owner_user_id",
            "kind",
            "currency",
            name=op.f("ledger_accounts_owner_user_id_kind_currency_key"),
        ),
    )
    op.create_index(
        "ix_ledger_accounts_platform_kind_currency",
        "ledger_accounts",
        ["kind", "currency"],
        unique=True,
        postgresql_where=sa.text("owner_user_id IS NULL"),
    )
    op.create_table(
        "ledger_balances",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("may_go_negative", sa.Boolean(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("shard >= 0", name=op.f("ledger_balances_shard_check")),
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name=op.f("ledger_balances_account_id_currency_fkey"),
        ),
        sa.PrimaryKeyConstraint("account_id", "shard", name=op.f("ledger_balances_pkey")),
    )
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ledger_postings_amount_nonzero_check")),
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name=op.f("ledger_postings_account_id_currency_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("ledger_postings_transaction_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("ledger_postings_pkey")),
    )
    op.create_index(
        "ix_ledger_postings_account_id_id", "ledger_postings", ["account_id", "id"], unique=False
    )
    op.create_index(
        "ix_ledger_postings_transaction_id", "ledger_postings", ["transaction_id"], unique=False
    )
    for statement in INVARIANT_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for statement in DROP_TRIGGERS:
        op.execute(statement)
    op.drop_index("ix_ledger_postings_transaction_id", table_name="ledger_postings")
    op.drop_index("ix_ledger_postings_account_id_id", table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_table("ledger_balances")
    op.drop_index(
        "ix_ledger_accounts_platform_kind_currency",
        table_name="ledger_accounts",
        postgresql_where=sa.text("owner_user_id IS NULL"),
    )
    op.drop_table("ledger_accounts")
    op.drop_table("ledger_transactions")
    op.drop_index("ix_admin_audit_log_target_type_target_id", table_name="admin_audit_log")
    op.drop_table("admin_audit_log")
