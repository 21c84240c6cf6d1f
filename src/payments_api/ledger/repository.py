"""The ledger's SQL. Hand-written statements: this is the hottest path of the service
and every statement here is also what the benchmark's raw-asyncpg baseline runs.

The statements of ``post`` run on the session's own asyncpg connection (same
transaction, same savepoints), compiled once at import by SQLAlchemy's asyncpg
dialect: measured in ``bench/``, SQLAlchemy's per-statement overhead was most of the
client-side cost of a settlement, and the client CPU was the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import RawStatement, Rider, driver_connection
from payments_api.events.outbox import EVENT_CTES, StagedEvent
from payments_api.events.repository import CROSS_BALANCE_ALERTS_CTE, CrossedAlert
from payments_api.ledger.errors import WalletFrozen
from payments_api.ledger.kinds import PLATFORM_KINDS, PLATFORM_SHARDS, AccountKind
from payments_api.payment_methods import auto_reload

# --- statements (module constants so the benchmark baseline can run the same SQL) ---
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

SELECT_ACCOUNTS = text(
    """
    SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative
    FROM unnest(CAST(:owners AS varchar[]), CAST(:kinds AS varchar[]),
                CAST(:currencies AS varchar[])) AS r(owner, kind, currency)
    JOIN ledger_accounts a
      ON a.kind = r.kind AND a.currency = r.currency
     AND ((r.owner = '' AND a.owner_user_id IS NULL) OR a.owner_user_id = r.owner)
    """
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
    """
    WITH frozen AS MATERIALIZED (
        SELECT u.frozen FROM users u
        WHERE u.id = CAST(:frozen_user AS varchar) AND u.frozen
        FOR SHARE
    ),
    inserted AS (
        INSERT INTO ledger_transactions
            (type, cause_type, cause_key, description, metadata, reverses_transaction_id)
        SELECT CAST(:type AS varchar), CAST(:cause_type AS varchar),
               CAST(:cause_key AS varchar), CAST(:description AS text),
               CAST(:metadata AS jsonb), CAST(:reverses_transaction_id AS bigint)
        WHERE NOT EXISTS (SELECT FROM frozen)
        ON CONFLICT (cause_key) DO NOTHING
        RETURNING id, created_at
    ),
    accounts AS MATERIALIZED (
        SELECT a.id, a.owner_user_id, a.kind, a.currency, a.shard_count, a.may_go_negative
        FROM inserted,
             unnest(CAST(:owners AS varchar[]), CAST(:kinds AS varchar[]),
                    CAST(:currencies AS varchar[])) AS r(owner, kind, currency)
        JOIN ledger_accounts a
          ON a.kind = r.kind AND a.currency = r.currency
         AND ((r.owner = '' AND a.owner_user_id IS NULL) OR a.owner_user_id = r.owner)
    ),
    locked AS MATERIALIZED (
        SELECT b.account_id, b.balance
        FROM ledger_balances b
        JOIN accounts a ON b.account_id = a.id AND a.shard_count = 1 AND b.shard = 0
        WHERE (SELECT count(*) FROM accounts) = cardinality(CAST(:owners AS varchar[]))
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
    """
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
    JOIN unnest(CAST(:account_ids AS bigint[]), CAST(:shards AS smallint[]))
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
    FROM unnest(CAST(:account_ids AS bigint[]), CAST(:shards AS smallint[]),
                CAST(:deltas AS bigint[])) AS d(account_id, shard, delta)
    WHERE b.account_id = d.account_id AND b.shard = d.shard
    """
)

INSERT_POSTINGS = text(
    """
    INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
    SELECT :transaction_id, p.account_id, p.currency, p.amount
    FROM unnest(CAST(:account_ids AS bigint[]), CAST(:currencies AS varchar[]),
                CAST(:amounts AS bigint[])) AS p(account_id, currency, amount)
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
        FROM unnest(CAST(:hot_account_ids AS bigint[]), CAST(:hot_deltas AS bigint[]))
             AS h(account_id, delta)
    ),
    applied AS (
        UPDATE ledger_balances b
        SET balance = b.balance + d.delta
        FROM (
            SELECT * FROM unnest(CAST(:account_ids AS bigint[]), CAST(:shards AS smallint[]),
                                 CAST(:deltas AS bigint[])) AS u(account_id, shard, delta)
            UNION ALL
            SELECT account_id, shard, delta FROM picked
        ) AS d
        WHERE b.account_id = d.account_id AND b.shard = d.shard
        RETURNING b.account_id
    )
    INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
    SELECT :transaction_id, p.account_id, p.currency, p.amount
    FROM unnest(CAST(:posting_account_ids AS bigint[]), CAST(:currencies AS varchar[]),
                CAST(:amounts AS bigint[])) AS p(account_id, currency, amount)
    RETURNING id
    """
)


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
    if alerts:
        ctes.append(CROSS_BALANCE_ALERTS_CTE.strip())
        selects.append(
            "SELECT 'alert', NULL, user_id, currency, threshold, available, below FROM alerts"
        )
    if reloads:
        ctes.append(auto_reload.CROSS_CTE.strip())
        selects.append("SELECT 'reload', NULL, user_id, currency, amount, NULL, below FROM reloads")
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
def _with_riders(event: bool, riders: tuple[str, ...]) -> RawStatement:
    return RawStatement.of(apply_deltas_statement(event=event, riders=riders))


@lru_cache(maxsize=64)
def _riders_alone(riders: tuple[str, ...]) -> RawStatement:
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


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: int
    owner_user_id: str | None
    kind: str
    currency: str
    shard_count: int
    may_go_negative: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.owner_user_id or "", self.kind, self.currency)


@dataclass(frozen=True, slots=True)
class StoredPosting:
    id: int
    account_id: int
    owner_user_id: str | None
    kind: str
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    id: int
    type: str
    cause_type: str
    cause_key: str
    description: str | None
    metadata: dict[str, Any]
    reverses_transaction_id: int | None
    created_at: datetime
    postings: tuple[StoredPosting, ...]


@dataclass(frozen=True, slots=True)
class InsertedTransaction:
    id: int
    created_at: datetime
    accounts: dict[tuple[str, str, str], AccountRow]
    """The accounts named that exist."""
    locked_balances: dict[tuple[int, int], int] | None
    """(account id, 0) -> balance of every single-shard account, locked; None when some
    account was missing and nothing was locked."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What the posting statement returned besides the postings' ids."""

    posting_ids: list[int]
    alerts: list[CrossedAlert]
    reloads: list[auto_reload.CrossedReload]
    event: tuple[int | None, int] | None
    """(event id or None when its change key was recorded before, deliveries written);
    None when no event was staged."""


def _account_key_arrays(keys: list[tuple[str, str, str]]) -> dict[str, list[str]]:
    """(owner, kind, currency) keys as the parallel arrays the account lookups unnest."""
    return {
        "owners": [k[0] for k in keys],
        "kinds": [k[1] for k in keys],
        "currencies": [k[2] for k in keys],
    }


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._bound: Any = None

    def bind(self, driver: Any) -> None:
        """Use this driver connection for the statements of one ``post`` (saves looking
        it up through the session for each of them); ``bind(None)`` ends it."""
        self._bound = driver

    async def _driver(self) -> Any:
        if self._bound is not None:
            return self._bound
        return await self.driver()

    async def driver(self) -> Any:
        """The asyncpg connection under the session's current transaction."""
        return await driver_connection(self.session)

    async def insert_transaction_locking_accounts(
        self,
        values: dict[str, Any],
        keys: list[tuple[str, str, str]],
        *,
        frozen_user: str | None = None,
    ) -> InsertedTransaction | None:
        """Insert the transaction (INSERT_TRANSACTION), :meth:`find_accounts` of ``keys``
        and, when they all exist, :meth:`lock_balances` of the single-shard ones, in one
        round trip; None (nothing written or locked) when the cause key exists already.
        With ``frozen_user``, that user's frozen flag is read first under a share lock
        (:meth:`user_is_frozen`): ``WalletFrozen`` when it is set (nothing written)."""
        driver = await self._driver()
        rows = await driver.fetch(
            RAW_INSERT_TRANSACTION_LOCK_ACCOUNTS.sql,
            *RAW_INSERT_TRANSACTION_LOCK_ACCOUNTS.args(
                {"frozen_user": frozen_user, **values, **_account_key_arrays(keys)}
            ),
        )
        if rows[0]["frozen"]:
            raise WalletFrozen(
                "The wallet is frozen: money cannot leave it by the owner's own action."
            )
        if rows[0]["transaction_id"] is None:
            return None
        found = [AccountRow(*row[2:8]) for row in rows if row["id"] is not None]
        accounts = {a.key: a for a in found}
        balances = None
        if len(accounts) == len(keys):
            balances = {(row["id"], 0): row["balance"] for row in rows if row["shard_count"] == 1}
        return InsertedTransaction(
            int(rows[0]["transaction_id"]), rows[0]["created_at"], accounts, balances
        )

    async def find_accounts(
        self, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], AccountRow]:
        if not keys:
            return {}
        driver = await self._driver()
        rows = await driver.fetch(
            RAW_SELECT_ACCOUNTS.sql,
            *RAW_SELECT_ACCOUNTS.args(_account_key_arrays(keys)),
        )
        found = [AccountRow(*row) for row in rows]
        return {a.key: a for a in found}

    async def create_account(self, owner: str, kind: str, currency: str) -> None:
        platform = AccountKind(kind) in PLATFORM_KINDS
        await self.session.execute(
            INSERT_ACCOUNT,
            {
                "owner": owner or None,
                "kind": kind,
                "currency": currency,
                "may_go_negative": platform,
                "shard_count": PLATFORM_SHARDS if platform else 1,
            },
        )

    async def lock_balances(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
        driver = await self._driver()
        rows = await driver.fetch(
            RAW_LOCK_BALANCES.sql,
            *RAW_LOCK_BALANCES.args(
                {"account_ids": [k[0] for k in keys], "shards": [k[1] for k in keys]}
            ),
        )
        return {(row["account_id"], row["shard"]): row["balance"] for row in rows}

    async def apply_deltas_inserting_postings(
        self,
        deltas: dict[tuple[int, int], int],
        hot_deltas: dict[int, int],
        transaction_id: int,
        postings: list[tuple[int, str, int]],
        *,
        observed: Sequence[tuple[str, str, int]] = (),
        event: StagedEvent | None = None,
        riders: Sequence[Rider] = (),
    ) -> Applied:
        """Pick a free shard (PICK_FREE_SHARD) for each account of ``hot_deltas``, apply
        ``deltas`` and those (APPLY_DELTAS), insert the postings (INSERT_POSTINGS), move
        the thresholds of the ``observed`` available balances (user, currency, balance
        after) and write ``event``, in one round trip (:func:`apply_deltas_statement`)."""
        keys = sorted(deltas)
        hot = sorted(hot_deltas)
        if riders:
            statement = _with_riders(event is not None, tuple(r.sql for r in riders))
        else:
            statement = RAW_APPLY_OBSERVED if event is None else RAW_APPLY_OBSERVED_EMITTING
        values = {
            "account_ids": [k[0] for k in keys],
            "shards": [k[1] for k in keys],
            "deltas": [deltas[k] for k in keys],
            "hot_account_ids": hot,
            "hot_deltas": [hot_deltas[a] for a in hot],
            "transaction_id": transaction_id,
            "posting_account_ids": [p[0] for p in postings],
            "currencies": [p[1] for p in postings],
            "amounts": [p[2] for p in postings],
            "observed_users": [o[0] for o in observed],
            "observed_currencies": [o[1] for o in observed],
            "observed_available": [o[2] for o in observed],
        }
        if event is not None:
            values.update(event.params())
        for rider in riders:
            values.update(rider.values)
        driver = await self._driver()
        rows = await driver.fetch(statement.sql, *statement.args(values))
        posting_ids: list[int] = []
        alerts: list[CrossedAlert] = []
        reloads: list[auto_reload.CrossedReload] = []
        written: tuple[int | None, int] | None = None if event is None else (None, 0)
        for row in rows:
            kind = row["row_kind"]
            if kind == "posting":
                posting_ids.append(row["id"])
            elif kind == "alert":
                alerts.append(
                    CrossedAlert(
                        row["user_id"],
                        row["currency"],
                        row["amount"],
                        row["below"],
                        row["available"],
                    )
                )
            elif kind == "reload":
                reloads.append(
                    auto_reload.CrossedReload(
                        row["user_id"], row["currency"], row["amount"], row["below"]
                    )
                )
            else:
                written = (row["id"], row["amount"])
        # Identity values follow the insert order: sorted, the ids line up with
        # ``postings`` whatever order the rows came back in.
        posting_ids.sort()
        return Applied(posting_ids, alerts, reloads, written)

    async def run_riders(self, riders: Sequence[Rider], transaction_id: int) -> None:
        """``riders`` in a statement of their own (the posting was made before)."""
        statement = _riders_alone(tuple(r.sql for r in riders))
        values: dict[str, Any] = {"transaction_id": transaction_id}
        for rider in riders:
            values.update(rider.values)
        driver = await self._driver()
        await driver.execute(statement.sql, *statement.args(values))

    async def user_is_frozen(self, user_id: str) -> bool:
        """The user's frozen flag, read under a share lock held to the end of the
        transaction (so a freeze cannot commit between this check and the postings)."""
        row = (await self.session.execute(SELECT_USER_FROZEN, {"user_id": user_id})).first()
        return bool(row is not None and row[0])

    async def allow_negative_available(self, allowed: bool) -> None:
        await self.session.execute(SET_ALLOW_NEGATIVE, {"value": "on" if allowed else "off"})

    async def get_transaction(
        self, *, transaction_id: int | None = None, cause_key: str | None = None
    ) -> StoredTransaction | None:
        value: Any
        if transaction_id is not None:
            statement, value = SELECT_TRANSACTION_BY_ID, transaction_id
        else:
            statement, value = SELECT_TRANSACTION_BY_CAUSE, cause_key
        head = (await self.session.execute(statement, {"value": value})).first()
        if head is None:
            return None
        rows = await self.session.execute(
            text(
                """
                SELECT p.id, p.account_id, a.owner_user_id, a.kind, p.currency, p.amount
                FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id
                WHERE p.transaction_id = :id ORDER BY p.id
                """
            ),
            {"id": head.id},
        )
        return StoredTransaction(
            id=head.id,
            type=head.type,
            cause_type=head.cause_type,
            cause_key=head.cause_key,
            description=head.description,
            metadata=head.metadata,
            reverses_transaction_id=head.reverses_transaction_id,
            created_at=head.created_at,
            postings=tuple(StoredPosting(*row) for row in rows),
        )

    async def user_balances(self, user_id: str) -> list[tuple[str, str, int]]:
        """(currency, kind, balance) of every account of the user."""
        rows = await self.session.execute(
            text(
                """
                SELECT a.currency, a.kind, sum(b.balance)::bigint AS balance
                FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
                WHERE a.owner_user_id = :user_id
                GROUP BY a.currency, a.kind
                ORDER BY a.currency, a.kind
                """
            ),
            {"user_id": user_id},
        )
        return [(row.currency, row.kind, row.balance) for row in rows]

    async def account_balance(self, owner: str, kind: str, currency: str) -> int:
        value = await self.session.scalar(
            text(
                """
                SELECT coalesce(sum(b.balance), 0)::bigint
                FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
                WHERE a.kind = :kind AND a.currency = :currency
                  AND ((:owner = '' AND a.owner_user_id IS NULL) OR a.owner_user_id = :owner)
                """
            ),
            {"owner": owner, "kind": kind, "currency": currency},
        )
        return int(value or 0)

    async def user_entries(
        self,
        user_id: str,
        *,
        limit: int,
        before_id: int | None,
        currency: str | None,
        transaction_type: str | None,
    ) -> list[Any]:
        """The user's postings, newest first (keyset pagination on the posting id)."""
        rows = await self.session.execute(
            text(
                """
                SELECT p.id, p.transaction_id, a.kind, p.currency, p.amount,
                       t.type, t.cause_type, t.description, p.created_at
                FROM ledger_accounts a
                JOIN ledger_postings p ON p.account_id = a.id
                JOIN ledger_transactions t ON t.id = p.transaction_id
                WHERE a.owner_user_id = :user_id
                  AND (CAST(:currency AS varchar) IS NULL OR a.currency = :currency)
                  AND (CAST(:type AS varchar) IS NULL OR t.type = :type)
                  AND (CAST(:before_id AS bigint) IS NULL OR p.id < :before_id)
                ORDER BY p.id DESC
                LIMIT :limit
                """
            ),
            {
                "user_id": user_id,
                "currency": currency,
                "type": transaction_type,
                "before_id": before_id,
                "limit": limit,
            },
        )
        return list(rows)
