"""A ledger posting in one statement: what ``statements.INSERT_TRANSACTION_LOCK_ACCOUNTS``
and ``statements.apply_deltas_statement`` did in two round trips, with the funds check
that ran in Python between them moved into SQL (issue #22).

In order, each part reading the ones before (``MATERIALIZED``, or a data-modifying
common table expression whose rows are read):

- ``frozen``: the initiator's frozen flag (``:frozen_user``, NULL: nobody's), read
  ``FOR SHARE`` first, as before: a frozen user's statement goes no further;
- ``prior``: the cause key's transaction as the statement's snapshot sees it: a replay
  locks nothing and writes nothing;
- ``accounts``: the accounts named (keys ``:owners``/``:kinds``/``:currencies``, with
  each account's net ``:deltas``), ``ready`` when every one exists (otherwise the
  caller creates the missing ones and sends the statement again);
- ``locked``: the single-shard balances, locked in (account id, shard) order, the one
  global lock order;
- ``short``: the first of them (by account id) the deltas would take below zero where
  that is not allowed: the caller's ``InsufficientFunds`` with that balance; not for a
  reversal of a transaction reversed already, whose insert then fails on the unique
  ``reverses_transaction_id`` as it did before any check (``AlreadyReversed``);
- ``inserted``: the transaction row, only when ready and nothing is short, ``ON
  CONFLICT (cause_key) DO NOTHING`` (a twin in flight with the same cause key is waited
  for; when it commits, nothing is inserted);
- ``posted_transaction``: its id (no row: nothing was inserted), the gate of every write
  after it: the shard picks of the hot accounts (``SKIP LOCKED``, shard 0 when others
  hold every shard), the balances' update, the postings, ``observed`` (the available
  balances left, for the balance alerts and auto-reloads), the event
  (``outbox.GATED_EVENT_CTES``) and the riders (``db.Rider``: they select from
  ``posted_transaction``).

So when the statement refuses (frozen, short, missing accounts) or finds a replay, it
has written nothing; it holds the locks taken on the way, as the two statements did.
Array parameters are read through scalar subqueries, as everywhere in the ledger's SQL
(generic plans kept: see ``statements.py``).

Rows: one ``head`` (``state``: frozen, replayed, missing, short or posted; ``id`` and
``created_at`` of the inserted transaction; for ``short``: ``user_id`` = the account's
kind, ``currency``, ``amount`` = its balance, ``available`` = its delta), then one per
posting (``id``, ``account_id``, in insert order), per alert or auto-reload that moved
and for the event written (``id``, ``amount`` = deliveries).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from sqlalchemy import TextClause, text

from payments_api.db import RawStatement
from payments_api.events.outbox import GATED_EVENT_CTES
from payments_api.events.repository import CROSS_BALANCE_ALERTS_CTE
from payments_api.ledger.statements import ACCOUNT_OF_KEY, TRANSACTION_FROM_PARAMETERS
from payments_api.payment_methods import auto_reload

_CHECKED = f"""
    frozen AS MATERIALIZED (
        SELECT u.frozen FROM users u
        WHERE u.id = CAST(:frozen_user AS varchar) AND u.frozen
        FOR SHARE
    ),
    prior AS MATERIALIZED (
        SELECT t.id FROM ledger_transactions t
        WHERE t.cause_key = CAST(:cause_key AS varchar) AND NOT EXISTS (SELECT FROM frozen)
    ),
    accounts AS MATERIALIZED (
        SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative,
               r.owner AS key_owner, r.delta
        FROM unnest((SELECT CAST(:owners AS varchar[])), (SELECT CAST(:kinds AS varchar[])),
                    (SELECT CAST(:currencies AS varchar[])), (SELECT CAST(:deltas AS bigint[])))
             AS r(owner, kind, currency, delta)
        CROSS JOIN {ACCOUNT_OF_KEY}
        WHERE NOT EXISTS (SELECT FROM frozen) AND NOT EXISTS (SELECT FROM prior)
    ),
    ready AS MATERIALIZED (
        SELECT (SELECT count(*) FROM accounts)
               = cardinality((SELECT CAST(:owners AS varchar[]))) AS ok
    ),
    locked AS MATERIALIZED (
        SELECT b.account_id, b.balance
        FROM ledger_balances b
        JOIN accounts a ON b.account_id = a.id AND a.shard_count = 1 AND b.shard = 0
        WHERE (SELECT ok FROM ready)
        ORDER BY b.account_id, b.shard
        FOR UPDATE OF b
    ),
    short AS MATERIALIZED (
        SELECT a.id, a.kind, a.currency, l.balance, a.delta
        FROM accounts a JOIN locked l ON l.account_id = a.id
        WHERE a.delta < 0 AND l.balance + a.delta < 0 AND NOT a.may_go_negative
          AND NOT (CAST(:allow_negative_available AS boolean) AND a.kind = 'available')
          AND NOT EXISTS (SELECT FROM ledger_transactions r
                          WHERE r.reverses_transaction_id
                                = CAST(:reverses_transaction_id AS bigint))
        ORDER BY a.id
        LIMIT 1
    ),
    inserted AS (
        {TRANSACTION_FROM_PARAMETERS}
        WHERE (SELECT ok FROM ready) AND NOT EXISTS (SELECT FROM short)
        ON CONFLICT (cause_key) DO NOTHING
        RETURNING id, created_at
    ),
    posted_transaction AS MATERIALIZED (SELECT id FROM inserted),
    picked AS MATERIALIZED (
        SELECT a.id AS account_id,
               coalesce((SELECT s.shard FROM ledger_balances s
                         WHERE s.account_id = a.id
                         ORDER BY random() LIMIT 1
                         FOR UPDATE SKIP LOCKED), 0) AS shard,
               a.delta
        FROM posted_transaction, accounts a
        WHERE a.shard_count > 1 AND a.delta <> 0
        ORDER BY a.id
    ),
    applied AS (
        UPDATE ledger_balances b
        SET balance = b.balance + d.delta
        FROM (
            SELECT a.id AS account_id, CAST(0 AS smallint) AS shard, a.delta
            FROM posted_transaction, accounts a
            WHERE a.shard_count = 1 AND a.delta <> 0
            UNION ALL
            SELECT account_id, shard, delta FROM picked
        ) AS d
        WHERE b.account_id = d.account_id AND b.shard = d.shard
        RETURNING b.account_id
    ),
    posted AS (
        INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
        SELECT t.id, a.id, p.currency, p.amount
        FROM posted_transaction t,
             unnest((SELECT CAST(:posting_owners AS varchar[])),
                    (SELECT CAST(:posting_kinds AS varchar[])),
                    (SELECT CAST(:posting_currencies AS varchar[])),
                    (SELECT CAST(:amounts AS bigint[])))
                 WITH ORDINALITY AS p(owner, kind, currency, amount, n)
             JOIN accounts a
               ON a.key_owner = p.owner AND a.kind = p.kind AND a.currency = p.currency
        ORDER BY p.n
        RETURNING id, account_id
    ),
    observed AS MATERIALIZED (
        SELECT a.owner_user_id AS user_id, a.currency, l.balance + a.delta AS available
        FROM posted_transaction, accounts a JOIN locked l ON l.account_id = a.id
        WHERE a.kind = 'available' AND a.owner_user_id IS NOT NULL AND a.delta <> 0
    )
"""  # noqa: S608 - constants only

_COLUMNS = (
    ("row_kind", "varchar"),
    ("id", "bigint"),
    ("account_id", "bigint"),
    ("user_id", "varchar"),
    ("currency", "varchar"),
    ("amount", "bigint"),
    ("available", "bigint"),
    ("below", "boolean"),
    ("state", "varchar"),
    ("created_at", "timestamptz"),
)


def _row(source: str, **values: str) -> str:
    """One SELECT of the result's union: ``values`` by column, typed NULL elsewhere."""
    columns = ", ".join(
        f"CAST({values.get(name, 'NULL')} AS {type_}) AS {name}" for name, type_ in _COLUMNS
    )
    return f"SELECT {columns} {source}"


_HEAD = _row(
    "FROM (SELECT) AS one LEFT JOIN short s ON true",
    row_kind="'head'",
    id="(SELECT id FROM inserted)",
    user_id="s.kind",
    currency="s.currency",
    amount="s.balance",
    available="s.delta",
    state="""CASE WHEN EXISTS (SELECT FROM frozen) THEN 'frozen'
                  WHEN EXISTS (SELECT FROM prior) THEN 'replayed'
                  WHEN NOT (SELECT ok FROM ready) THEN 'missing'
                  WHEN s.id IS NOT NULL THEN 'short'
                  WHEN EXISTS (SELECT FROM inserted) THEN 'posted'
                  ELSE 'replayed' END""",
    created_at="(SELECT created_at FROM inserted)",
)


def _part_rows(cte: str, row_kind: str, *same_named: str, **renamed: str) -> str:
    """The result rows of a part, one per row of its ``cte``: the columns
    ``same_named`` there and in the result, and the ``renamed`` ones."""
    return _row(
        f"FROM {cte}", row_kind=f"'{row_kind}'", **{name: name for name in same_named}, **renamed
    )


_ALERTS = (
    CROSS_BALANCE_ALERTS_CTE.strip(),
    _part_rows("alerts", "alert", "user_id", "currency", "available", "below", amount="threshold"),
)
_RELOADS = (
    auto_reload.CROSS_CTE.strip(),
    _part_rows("reloads", "reload", "user_id", "currency", "amount", "below"),
)
_EVENT = (
    GATED_EVENT_CTES.strip(),
    _part_rows("event", "event", id="event.id", amount="(SELECT count(*) FROM deliveries)"),
)


def post_statement(
    *, alerts: bool = True, reloads: bool = True, event: bool = False, riders: Sequence[str] = ()
) -> TextClause:
    """The posting statement (module docstring), with the balance alerts (``alerts``),
    the auto-reloads (``reloads``), the change's event (``event``, parameters
    ``event_*``) and ``riders`` (``db.Rider.sql``)."""
    # Each optional part: its common table expressions and the SELECT of its result rows
    # (None for a rider: it returns nothing), in the order the statement needs them.
    parts: list[tuple[str, str | None]] = [
        part for wanted, part in ((alerts, _ALERTS), (reloads, _RELOADS)) if wanted
    ]
    parts += [(rider.strip(), None) for rider in riders]
    if event:
        parts.append(_EVENT)
    ctes = [_CHECKED.strip(), *(cte for cte, _ in parts)]
    selects = [
        _HEAD,
        _part_rows("posted", "posting", "id", "account_id"),
        *(select for _, select in parts if select is not None),
    ]
    return text("WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(selects))


RAW_POST = RawStatement.of(post_statement())
RAW_POST_EMITTING = RawStatement.of(post_statement(event=True))


@lru_cache(maxsize=64)
def post_with_riders(event: bool, riders: tuple[str, ...]) -> RawStatement:
    return RawStatement.of(post_statement(event=event, riders=riders))
