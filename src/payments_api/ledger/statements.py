"""The ledger's hand-written SQL, as module constants, compiled once at import by
SQLAlchemy's asyncpg dialect (``RawStatement``), see ``repository.py``. ``post`` sends
one statement, ``post_statement.py``'s; the two it replaced (issue #22),
INSERT_TRANSACTION_LOCK_ACCOUNTS then APPLY_OBSERVED with the funds check in Python
between them, stay here for the benchmark's raw-asyncpg baseline (``bench/ledger.py``)
and the replays of older recordings (``bench/replay.py``).

Array parameters are read through a scalar subquery, ``(SELECT CAST(:ids AS bigint[]))``,
here and in the parts other domains add to the posting statement (balance alerts,
auto-reloads). Bare, a parameter's array is a constant to a plan made for the values at
hand, so PostgreSQL knew its length there and not in the prepared statement's generic
plan; the generic plan then always looked dearer and the statement was planned again on
every execution (0.3-0.4 ms of server CPU per posting: pg_stat_statements with
track_planning). Behind the subquery both plans estimate alike, and after its first five
executions the statement keeps its generic plan (bench/events.py: settlements +20%).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from sqlalchemy import TextClause, text

from payments_api.db import RawStatement
from payments_api.events.outbox import EVENT_CTES
from payments_api.events.repository import CROSS_BALANCE_ALERTS_CTE
from payments_api.payment_methods import auto_reload

INSERT_TRANSACTION = text(
    """
    INSERT INTO ledger_transactions
        (type, cause_type, cause_key, description, metadata, reverses_transaction_id)
    VALUES (:type, :cause_type, :cause_key, :description, CAST(:metadata AS jsonb),
            :reverses_transaction_id)
    ON CONFLICT (cause_key) DO NOTHING
    RETURNING id, created_at
    """
)

# The account a key names, for each row ``r`` of (owner, kind, currency): a user's by
# its (owner_user_id, kind, currency) key, the platform's (owner '') by the partial
# (kind, currency) index: an index lookup each, in any plan. As one join condition with
# an OR between the two, a generic plan made while the table is small (a new
# installation's) hashed every account of the key's kind, a sequential scan that grows
# with the users: for two keys among 1,015 accounts, 0.50 ms against 0.11 ms by index
# (EXPLAIN ANALYZE of both forms, plan_cache_mode = force_generic_plan).
ACCOUNT_OF_KEY = """LATERAL (
        SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative
        FROM ledger_accounts a
        WHERE a.owner_user_id = r.owner AND a.kind = r.kind AND a.currency = r.currency
        UNION ALL
        SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative
        FROM ledger_accounts a
        WHERE r.owner = '' AND a.owner_user_id IS NULL
          AND a.kind = r.kind AND a.currency = r.currency
    ) AS a"""

SELECT_ACCOUNTS = text(
    f"""
    SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative
    FROM unnest((SELECT CAST(:owners AS varchar[])), (SELECT CAST(:kinds AS varchar[])),
                (SELECT CAST(:currencies AS varchar[]))) AS r(owner, kind, currency)
    CROSS JOIN {ACCOUNT_OF_KEY}
    """  # noqa: S608 - constants only
)

INSERT_ACCOUNT = text(
    """
    WITH account AS (
        INSERT INTO ledger_accounts (owner_user_id, kind, currency, may_go_negative, shard_count)
        VALUES (:owner, :kind, :currency, :may_go_negative, :shard_count)
        ON CONFLICT DO NOTHING
        RETURNING id, currency, kind, may_go_negative, shard_count
    )
    INSERT INTO ledger_balances (account_id, shard, currency, kind, may_go_negative)
    SELECT account.id, s, account.currency, account.kind, account.may_go_negative
    FROM account, generate_series(0, account.shard_count - 1) AS s
    """
)

# The transaction row of a posting, from the statement's parameters (a SELECT, so each
# posting statement adds the WHERE that gates it), in both INSERT_TRANSACTION_LOCK_ACCOUNTS
# and post_statement.py's statement.
TRANSACTION_FROM_PARAMETERS = """INSERT INTO ledger_transactions
            (type, cause_type, cause_key, description, metadata, reverses_transaction_id)
        SELECT CAST(:type AS varchar), CAST(:cause_type AS varchar),
               CAST(:cause_key AS varchar), CAST(:description AS text),
               CAST(:metadata AS jsonb), CAST(:reverses_transaction_id AS bigint)"""

# INSERT_TRANSACTION, SELECT_ACCOUNTS and LOCK_BALANCES in one round trip, as ``post``
# runs them (no client decision in between), after SELECT_USER_FROZEN of
# ``frozen_user`` (NULL: nobody's), whose share lock it takes first: a frozen user
# inserts nothing. Always one row at least: ``frozen``, and ``transaction_id`` NULL when
# nothing was inserted (the user is frozen, or the cause was applied before: nothing
# locked); otherwise one row per account found (account columns NULL when none is),
# with the balance of each single-shard one, locked in (account id, shard) order as
# LOCK_BALANCES does. Only when every account named exists: otherwise nothing is
# locked here and ``post`` creates the missing accounts, then locks them all in one
# ordered statement as before, so the lock order stays global. The accounts are read
# with the statement's snapshot, as SELECT_ACCOUNTS right after would.
INSERT_TRANSACTION_LOCK_ACCOUNTS = text(
    f"""
    WITH frozen AS MATERIALIZED (
        SELECT u.frozen FROM users u
        WHERE u.id = CAST(:frozen_user AS varchar) AND u.frozen
        FOR SHARE
    ),
    inserted AS (
        {TRANSACTION_FROM_PARAMETERS}
        WHERE NOT EXISTS (SELECT FROM frozen)
        ON CONFLICT (cause_key) DO NOTHING
        RETURNING id, created_at
    ),
    accounts AS MATERIALIZED (
        SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative
        FROM inserted,
             unnest((SELECT CAST(:owners AS varchar[])), (SELECT CAST(:kinds AS varchar[])),
                    (SELECT CAST(:currencies AS varchar[]))) AS r(owner, kind, currency)
        CROSS JOIN {ACCOUNT_OF_KEY}
    ),
    locked AS MATERIALIZED (
        SELECT b.account_id, b.balance
        FROM ledger_balances b
        JOIN accounts a ON b.account_id = a.id AND a.shard_count = 1 AND b.shard = 0
        WHERE (SELECT count(*) FROM accounts) = cardinality((SELECT CAST(:owners AS varchar[])))
        ORDER BY b.account_id, b.shard
        FOR UPDATE OF b
    )
    SELECT inserted.id AS transaction_id, inserted.created_at,
           a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative,
           locked.balance, EXISTS (SELECT FROM frozen) AS frozen
    FROM (SELECT) AS one
    LEFT JOIN inserted ON true
    LEFT JOIN accounts a ON true
    LEFT JOIN locked ON locked.account_id = a.id
    """  # noqa: S608 - constants only
)

# Take one shard row of a hot account without waiting: rows another transaction holds
# are skipped, so concurrent settlements never queue on the platform's accounts.
PICK_FREE_SHARD = text(
    """
    SELECT shard FROM ledger_balances
    WHERE account_id = :account_id
    ORDER BY random()
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
)

# Lock the touched rows in one deterministic order (account id, shard): two
# transactions touching the same accounts in any order can never deadlock.
LOCK_BALANCES = text(
    """
    SELECT b.account_id, b.shard, b.balance
    FROM ledger_balances b
    JOIN unnest((SELECT CAST(:account_ids AS bigint[])), (SELECT CAST(:shards AS smallint[])))
         AS r(account_id, shard)
      ON b.account_id = r.account_id AND b.shard = r.shard
    ORDER BY b.account_id, b.shard
    FOR UPDATE OF b
    """
)

APPLY_DELTAS = text(
    """
    UPDATE ledger_balances b
    SET balance = b.balance + d.delta
    FROM unnest((SELECT CAST(:account_ids AS bigint[])), (SELECT CAST(:shards AS smallint[])),
                (SELECT CAST(:deltas AS bigint[]))) AS d(account_id, shard, delta)
    WHERE b.account_id = d.account_id AND b.shard = d.shard
    """
)

INSERT_POSTINGS = text(
    """
    INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
    SELECT :transaction_id, p.account_id, p.currency, p.amount
    FROM unnest((SELECT CAST(:account_ids AS bigint[])), (SELECT CAST(:currencies AS varchar[])),
                (SELECT CAST(:amounts AS bigint[]))) AS p(account_id, currency, amount)
    RETURNING id
    """
)

# PICK_FREE_SHARD, APPLY_DELTAS and INSERT_POSTINGS in one round trip, as ``post`` runs
# them once the single-shard balances are locked and checked (nothing in between
# depends on the client). Each hot account's delta goes to a shard picked here with
# SKIP LOCKED (never waiting), or to shard 0 when others hold every shard (then waiting
# for shard 0 only, after the ordered locks, as before: no cycle). The UPDATE and the
# picks run to completion even though the INSERT does not read them, and the triggers
# fire as for separate statements (non-negative balances at once, the balanced-postings
# check at commit).
APPLY_DELTAS_INSERT_POSTINGS = text(
    """
    WITH picked AS MATERIALIZED (
        SELECT h.account_id,
               coalesce((SELECT s.shard FROM ledger_balances s
                         WHERE s.account_id = h.account_id
                         ORDER BY random() LIMIT 1
                         FOR UPDATE SKIP LOCKED), 0) AS shard,
               h.delta
        FROM unnest((SELECT CAST(:hot_account_ids AS bigint[])),
                    (SELECT CAST(:hot_deltas AS bigint[]))) AS h(account_id, delta)
    ),
    applied AS (
        UPDATE ledger_balances b
        SET balance = b.balance + d.delta
        FROM (
            SELECT * FROM unnest((SELECT CAST(:account_ids AS bigint[])),
                                 (SELECT CAST(:shards AS smallint[])),
                                 (SELECT CAST(:deltas AS bigint[]))) AS u(account_id, shard, delta)
            UNION ALL
            SELECT account_id, shard, delta FROM picked
        ) AS d
        WHERE b.account_id = d.account_id AND b.shard = d.shard
        RETURNING b.account_id
    )
    INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
    SELECT :transaction_id, p.account_id, p.currency, p.amount
    FROM unnest((SELECT CAST(:posting_account_ids AS bigint[])),
                (SELECT CAST(:currencies AS varchar[])),
                (SELECT CAST(:amounts AS bigint[]))) AS p(account_id, currency, amount)
    RETURNING id
    """
)


# The available balances a posting left, from the parameters ``observed_users``,
# ``observed_currencies`` and ``observed_available`` (computed by the caller), as the
# common table expression the balance alerts' and auto-reloads' parts read.
OBSERVED_FROM_PARAMETERS = """
    observed AS (
        SELECT * FROM unnest((SELECT CAST(:observed_users AS varchar[])),
                             (SELECT CAST(:observed_currencies AS varchar[])),
                             (SELECT CAST(:observed_available AS bigint[])))
             AS v(user_id, currency, available)
    )
"""


def apply_deltas_statement(
    *,
    alerts: bool = True,
    reloads: bool = True,
    event: bool = False,
    riders: Sequence[str] = (),
) -> TextClause:
    """APPLY_DELTAS_INSERT_POSTINGS with what a posting's balances tell other domains, in
    the same round trip: the balance alerts (``alerts``, events'
    CROSS_BALANCE_ALERTS_CTE) and the auto-reloads (``reloads``, payment_methods'
    CROSS_CTE) moved to the side of their thresholds the available balances
    ``observed_*`` (computed by ``post`` from the locked balances and the deltas) are
    on, and with ``event`` the change's outgoing event (events' EVENT_CTES, parameters
    ``event_*``). Those UPDATEs and INSERTs read only the parameters and their own
    tables: in the posting's statement they see and write what they did as statements
    of their own after it, under the same balance locks. One row per posting
    (``row_kind`` 'posting', ``id``), per alert or auto-reload that moved ('alert',
    'reload') and for the event written ('event': ``id``, ``amount`` = deliveries).
    ``riders``: more common table expressions (``db.Rider.sql``), run for their writes."""
    ctes = [
        APPLY_DELTAS_INSERT_POSTINGS.text.strip()
        .removeprefix("WITH ")
        .replace(
            "INSERT INTO ledger_postings",
            ",\nposted AS (\n    INSERT INTO ledger_postings",
        )
        + "\n)"
    ]
    selects = [
        "SELECT 'posting' AS row_kind, posted.id, NULL::varchar AS user_id, "
        "NULL::varchar AS currency, NULL::bigint AS amount, NULL::bigint AS available, "
        "NULL::boolean AS below FROM posted"
    ]
    if alerts or reloads:
        ctes.append(OBSERVED_FROM_PARAMETERS.strip())
    if alerts:
        ctes.append(CROSS_BALANCE_ALERTS_CTE.strip())
        selects.append(
            "SELECT 'alert', NULL, user_id, currency, threshold, available, below FROM alerts"
        )
    if reloads:
        ctes.append(auto_reload.CROSS_CTE.strip())
        selects.append("SELECT 'reload', NULL, user_id, currency, amount, NULL, below FROM reloads")
    if riders:
        ctes.append("posted_transaction AS (SELECT CAST(:transaction_id AS bigint) AS id)")
    ctes += [rider.strip() for rider in riders]
    if event:
        ctes.append(EVENT_CTES.strip())
        selects.append(
            "SELECT 'event', event.id, NULL, NULL, (SELECT count(*) FROM deliveries), NULL, "
            "NULL FROM event"
        )
    return text("WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(selects))


APPLY_OBSERVED = apply_deltas_statement()
APPLY_OBSERVED_EMITTING = apply_deltas_statement(event=True)


@lru_cache(maxsize=64)
def with_riders(event: bool, riders: tuple[str, ...]) -> RawStatement:
    return RawStatement.of(apply_deltas_statement(event=event, riders=riders))


@lru_cache(maxsize=64)
def riders_statement(riders: tuple[str, ...]) -> RawStatement:
    # ``transaction_id`` typed first, as in the posting statement (where it is bigint).
    ctes = ["posted_transaction AS (SELECT CAST(:transaction_id AS bigint) AS id)"]
    ctes += [rider.strip() for rider in riders]
    return RawStatement.of(text("WITH " + ",\n".join(ctes) + "\nSELECT id FROM posted_transaction"))


_SELECT_TRANSACTION = """
    SELECT t.id, t.type, t.cause_type, t.cause_key, t.description, t.metadata,
           t.reverses_transaction_id, t.created_at
    FROM ledger_transactions t
"""
SELECT_TRANSACTION_BY_ID = text(_SELECT_TRANSACTION + "WHERE t.id = :value")
SELECT_TRANSACTION_BY_CAUSE = text(_SELECT_TRANSACTION + "WHERE t.cause_key = :value")

SELECT_USER_FROZEN = text("SELECT frozen FROM users WHERE id = :user_id FOR SHARE")
SET_ALLOW_NEGATIVE = text("SELECT set_config('payments.allow_negative_available', :value, true)")


RAW_SELECT_ACCOUNTS = RawStatement.of(SELECT_ACCOUNTS)
RAW_INSERT_TRANSACTION_LOCK_ACCOUNTS = RawStatement.of(INSERT_TRANSACTION_LOCK_ACCOUNTS)
RAW_PICK_FREE_SHARD = RawStatement.of(PICK_FREE_SHARD)
RAW_LOCK_BALANCES = RawStatement.of(LOCK_BALANCES)
RAW_APPLY_DELTAS = RawStatement.of(APPLY_DELTAS)
RAW_APPLY_DELTAS_INSERT_POSTINGS = RawStatement.of(APPLY_DELTAS_INSERT_POSTINGS)
RAW_APPLY_OBSERVED = RawStatement.of(APPLY_OBSERVED)
RAW_APPLY_OBSERVED_EMITTING = RawStatement.of(APPLY_OBSERVED_EMITTING)
