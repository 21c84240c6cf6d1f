"""the ledger's balance check reads a transaction's postings once

Revision ID: 0028_ledger_check_one_scan
Revises: 0027_open_order_purposes
Create Date: 2026-12-05 09:10:00

``ledger_assert_balanced`` runs at commit once for every ledger transaction and once for
every posting inserted (the deferred constraint triggers of 0002), so a settlement's
three transactions check themselves ten times. Each check counted the postings and then
summed them per currency: two scans of the transaction's postings. Measured with
``pg_stat_statements`` over ``python -m bench.cpu --only webhook``, the checks took as
much of PostgreSQL's time as the ledger's posting statement itself. The count and the
sums now come from one scan; the checks, their order and their errors are unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028_ledger_check_one_scan"
down_revision: str | None = "0027_open_order_purposes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_SCAN = """
CREATE OR REPLACE FUNCTION ledger_assert_balanced(txn bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  postings bigint;
  unbalanced boolean;
BEGIN
  SELECT coalesce(sum(per_currency.n), 0), coalesce(bool_or(per_currency.total <> 0), false)
    INTO postings, unbalanced
    FROM (SELECT count(*) AS n, sum(amount) AS total
            FROM ledger_postings WHERE transaction_id = txn
           GROUP BY currency) AS per_currency;
  IF postings < 2 THEN
    RAISE EXCEPTION 'ledger transaction % has fewer than two postings', txn
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transactions_balanced_check';
  END IF;
  IF unbalanced THEN
    RAISE EXCEPTION 'ledger transaction % does not balance', txn
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transactions_balanced_check';
  END IF;
END $$
"""

TWO_SCANS = """
CREATE OR REPLACE FUNCTION ledger_assert_balanced(txn bigint) RETURNS void
LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    op.execute(ONE_SCAN)


def downgrade() -> None:
    op.execute(TWO_SCANS)
