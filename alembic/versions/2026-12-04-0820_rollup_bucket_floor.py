"""earnings rollups: bucket by flooring the Unix time instead of date_bin

Revision ID: 0018_rollup_bucket_floor
Revises: 0017_subscriptions
Create Date: 2026-12-04 08:20:00

``date_bin`` with an origin after the instant is not portable: PostgreSQL 16.2 (the
``pgserver`` build) puts an instant that sits exactly on a boundary before the origin
into the previous bucket, so the bucket it returns for 1890-06-14 23:00 UTC is 22:45, and
the check constraint (also ``date_bin``) then refused the trigger's own row. Flooring
the exact (numeric) Unix time to 900 seconds gives the same bucket on every version and
on both sides of 2000-01-01, and is what ``earnings.repository.bucket_floor`` computes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_rollup_bucket_floor"
down_revision: str | None = "0017_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKET = "to_timestamp(floor(extract(epoch FROM {0}) / 900) * 900)"

ROLLUP_FUNCTION = """
CREATE OR REPLACE FUNCTION earnings_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
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
          AND bucket_start = to_timestamp(floor(extract(epoch FROM OLD.earned_at) / 900) * 900)
          AND currency = OLD.currency AND project_id = coalesce(OLD.project_id, '')
          AND entries = 1;
        IF NOT FOUND THEN
            UPDATE earnings_rollups SET amount = amount - OLD.amount, entries = entries - 1
            WHERE payee_id = OLD.payee_id
              AND bucket_start = to_timestamp(floor(extract(epoch FROM OLD.earned_at) / 900) * 900)
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
        VALUES (NEW.payee_id, to_timestamp(floor(extract(epoch FROM NEW.earned_at) / 900) * 900),
                NEW.currency, coalesce(NEW.project_id, ''), NEW.amount, 1)
        ON CONFLICT (payee_id, bucket_start, currency, project_id)
        DO UPDATE SET amount = r.amount + excluded.amount, entries = r.entries + 1;
    END IF;
    RETURN NULL;
END
$$
"""
_OLD_CHECK = (
    "date_bin('15 minutes', bucket_start, TIMESTAMPTZ '2000-01-01 00:00:00+00') = bucket_start"
)
_NEW_CHECK = "extract(epoch FROM bucket_start) % 900 = 0"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(ROLLUP_FUNCTION)
    op.drop_constraint(
        op.f("earnings_rollups_bucket_aligned_check"), "earnings_rollups", type_="check"
    )
    op.create_check_constraint(
        op.f("earnings_rollups_bucket_aligned_check"), "earnings_rollups", _NEW_CHECK
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(
        op.f("earnings_rollups_bucket_aligned_check"), "earnings_rollups", type_="check"
    )
    op.create_check_constraint(
        op.f("earnings_rollups_bucket_aligned_check"), "earnings_rollups", _OLD_CHECK
    )
    op.execute(
        ROLLUP_FUNCTION.replace(
            _BUCKET.format("OLD.earned_at"),
            "date_bin(interval '15 minutes', OLD.earned_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
        ).replace(
            _BUCKET.format("NEW.earned_at"),
            "date_bin(interval '15 minutes', NEW.earned_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
        )
    )
