"""earnings rollups: 15-minute buckets and all-time totals for the summary

Revision ID: 0011_earnings_rollups
Revises: 0010_projects
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_earnings_rollups"
down_revision: str | None = "0010_projects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keeps earnings_rollups and earnings_totals equal to the sums and counts of the entries,
# in the transaction that writes the entry, whatever wrote it (this code, a process still
# running the previous release during a rolling deploy, a manual correction). A bucket is
# earned_at truncated to 15 minutes on UTC; entries without a project are rolled up under
# project_id '' (the key is NOT NULL). The total's row is always locked before the
# bucket's, so concurrent writers for one payee queue on the same row first. A row whose
# last entry goes away is deleted (entries > 0).
ROLLUP_FUNCTION = """
CREATE FUNCTION earnings_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM earnings_totals
        WHERE payee_id = OLD.payee_id AND currency = OLD.currency
          AND project_id = coalesce(OLD.project_id, '') AND entries = 1;
        IF NOT FOUND THEN
            UPDATE earnings_totals SET amount = amount - OLD.amount, entries = entries - 1
            WHERE payee_id = OLD.payee_id AND currency = OLD.currency
              AND project_id = coalesce(OLD.project_id, '');
        END IF;
        DELETE FROM earnings_rollups
        WHERE payee_id = OLD.payee_id
          AND bucket_start = date_bin(interval '15 minutes', OLD.earned_at,
                                      TIMESTAMPTZ '2000-01-01 00:00:00+00')
          AND currency = OLD.currency AND project_id = coalesce(OLD.project_id, '')
          AND entries = 1;
        IF NOT FOUND THEN
            UPDATE earnings_rollups SET amount = amount - OLD.amount, entries = entries - 1
            WHERE payee_id = OLD.payee_id
              AND bucket_start = date_bin(interval '15 minutes', OLD.earned_at,
                                          TIMESTAMPTZ '2000-01-01 00:00:00+00')
              AND currency = OLD.currency AND project_id = coalesce(OLD.project_id, '');
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO earnings_totals AS t (payee_id, currency, project_id, amount, entries)
        VALUES (NEW.payee_id, NEW.currency, coalesce(NEW.project_id, ''), NEW.amount, 1)
        ON CONFLICT (payee_id, currency, project_id)
        DO UPDATE SET amount = t.amount + excluded.amount, entries = t.entries + 1;
        INSERT INTO earnings_rollups AS r (payee_id, bucket_start, currency, project_id,
                                           amount, entries)
        VALUES (NEW.payee_id,
                date_bin(interval '15 minutes', NEW.earned_at,
                         TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                NEW.currency, coalesce(NEW.project_id, ''), NEW.amount, 1)
        ON CONFLICT (payee_id, bucket_start, currency, project_id)
        DO UPDATE SET amount = r.amount + excluded.amount, entries = r.entries + 1;
    END IF;
    RETURN NULL;
END
$$
"""
ROLLUP_TRIGGER = """
CREATE TRIGGER earnings_rollup
AFTER INSERT OR DELETE OR UPDATE OF payee_id, currency, project_id, amount, earned_at
ON earnings FOR EACH ROW EXECUTE FUNCTION earnings_rollup()
"""
# TRUNCATE earnings empties the rollups too.
TRUNCATE_FUNCTION = """
CREATE FUNCTION earnings_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE earnings_rollups, earnings_totals;
    RETURN NULL;
END
$$
"""
TRUNCATE_TRIGGER = """
CREATE TRIGGER earnings_rollup_truncate AFTER TRUNCATE ON earnings
FOR EACH STATEMENT EXECUTE FUNCTION earnings_rollup_truncate()
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "earnings_rollups",
        sa.Column("payee_id", sa.String(length=255), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "date_bin('15 minutes', bucket_start, TIMESTAMPTZ '2000-01-01 00:00:00+00') = bucket_start",
            name=op.f("earnings_rollups_bucket_aligned_check"),
        ),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("earnings_rollups_currency_check")),
        sa.CheckConstraint("amount >= 0", name=op.f("earnings_rollups_amount_nonnegative_check")),
        sa.CheckConstraint("entries > 0", name=op.f("earnings_rollups_entries_positive_check")),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["users.id"], name=op.f("earnings_rollups_payee_id_fkey")
        ),
        sa.PrimaryKeyConstraint(
            "payee_id",
            "bucket_start",
            "currency",
            "project_id",
            name=op.f("earnings_rollups_pkey"),
        ),
    )
    op.create_table(
        "earnings_totals",
        sa.Column("payee_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("earnings_totals_currency_check")),
        sa.CheckConstraint("amount >= 0", name=op.f("earnings_totals_amount_nonnegative_check")),
        sa.CheckConstraint("entries > 0", name=op.f("earnings_totals_entries_positive_check")),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["users.id"], name=op.f("earnings_totals_payee_id_fkey")
        ),
        sa.PrimaryKeyConstraint(
            "payee_id", "currency", "project_id", name=op.f("earnings_totals_pkey")
        ),
    )
    # Writers of entries wait (SHARE lock) until the migration commits: every entry is
    # either backfilled here or rolled up by the trigger, never both.
    op.execute("LOCK TABLE earnings IN SHARE MODE")
    op.execute(ROLLUP_FUNCTION)
    op.execute(ROLLUP_TRIGGER)
    op.execute(TRUNCATE_FUNCTION)
    op.execute(TRUNCATE_TRIGGER)
    op.execute(
        """
        INSERT INTO earnings_rollups (payee_id, bucket_start, currency, project_id, amount,
                                      entries)
        SELECT payee_id,
               date_bin(interval '15 minutes', earned_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
               currency, coalesce(project_id, ''), sum(amount), count(*)
        FROM earnings
        GROUP BY 1, 2, 3, 4
        """
    )
    op.execute(
        """
        INSERT INTO earnings_totals (payee_id, currency, project_id, amount, entries)
        SELECT payee_id, currency, coalesce(project_id, ''), sum(amount), count(*)
        FROM earnings
        GROUP BY 1, 2, 3
        """
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP TRIGGER earnings_rollup_truncate ON earnings")
    op.execute("DROP TRIGGER earnings_rollup ON earnings")
    op.execute("DROP FUNCTION earnings_rollup_truncate()")
    op.execute("DROP FUNCTION earnings_rollup()")
    op.drop_table("earnings_totals")
    op.drop_table("earnings_rollups")
