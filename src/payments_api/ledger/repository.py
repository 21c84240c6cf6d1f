"""The ledger's SQL, run: the statements themselves are ``statements.py``'s and, for
``post``, ``post_statement.py``'s (the hottest path of the service).

The statements of ``post`` run on the session's own asyncpg connection (same
transaction, same savepoints), compiled once at import by SQLAlchemy's asyncpg
dialect: measured in ``bench/``, SQLAlchemy's per-statement overhead was most of the
client-side cost of a settlement, and the client CPU was the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider, driver_connection, riders_written
from payments_api.events.outbox import StagedEvent
from payments_api.events.repository import CrossedAlert
from payments_api.ledger.kinds import PLATFORM_KINDS, PLATFORM_SHARDS, AccountKind
from payments_api.ledger.post_statement import RAW_POST, RAW_POST_EMITTING, post_with_riders
from payments_api.ledger.statements import (
    ACCOUNT_OF_KEY,
    INSERT_ACCOUNT,
    RAW_SELECT_ACCOUNTS,
    SELECT_TRANSACTION_BY_CAUSE,
    SELECT_TRANSACTION_BY_ID,
    SET_ALLOW_NEGATIVE,
    riders_statement,
)
from payments_api.payment_methods import auto_reload


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
class Shortfall:
    """The balance a posting would have taken below zero (``InsufficientFunds``)."""

    kind: str
    currency: str
    balance: int
    delta: int


@dataclass(frozen=True, slots=True)
class Posted:
    """What the one-statement posting (``post_statement``) did."""

    state: str
    """frozen, replayed, missing (some account does not exist), short or posted;
    nothing was written unless posted."""
    transaction_id: int | None
    created_at: datetime | None
    shortfall: Shortfall | None
    postings: list[tuple[int, int]]
    """(posting id, account id) in the postings' order."""
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

    async def post_in_one_statement(
        self,
        values: dict[str, Any],
        keys: list[tuple[str, str, str]],
        deltas: list[int],
        postings: list[tuple[str, str, str, int]],
        *,
        frozen_user: str | None,
        allow_negative_available: bool,
        event: StagedEvent | None = None,
        riders: Sequence[Rider] = (),
    ) -> Posted:
        """The whole posting in one round trip (``post_statement``): ``values`` (the
        transaction row), the accounts of ``keys`` with their net ``deltas``, the
        ``postings`` (owner or '', kind, currency, amount), ``event`` and ``riders``;
        written only when the state is ``posted`` (then the riders are told)."""
        if riders:
            statement = post_with_riders(event is not None, tuple(r.sql for r in riders))
        else:
            statement = RAW_POST if event is None else RAW_POST_EMITTING
        parameters = {
            **values,
            **_account_key_arrays(keys),
            "deltas": deltas,
            "posting_owners": [p[0] for p in postings],
            "posting_kinds": [p[1] for p in postings],
            "posting_currencies": [p[2] for p in postings],
            "amounts": [p[3] for p in postings],
            "frozen_user": frozen_user,
            "allow_negative_available": allow_negative_available,
        }
        if event is not None:
            parameters.update(event.params())
        for rider in riders:
            parameters.update(rider.values)
        driver = await self._driver()
        rows = await driver.fetch(statement.sql, *statement.args(parameters))
        head = next(row for row in rows if row["row_kind"] == "head")
        state = head["state"]
        if state == "posted":
            riders_written(riders)
        shortfall = None
        if state == "short":
            shortfall = Shortfall(
                head["user_id"], head["currency"], head["amount"], head["available"]
            )
        posted: list[tuple[int, int]] = []
        alerts: list[CrossedAlert] = []
        reloads: list[auto_reload.CrossedReload] = []
        written: tuple[int | None, int] | None = None if event is None else (None, 0)
        for row in rows:
            kind = row["row_kind"]
            if kind == "head":
                continue
            if kind == "posting":
                posted.append((row["id"], row["account_id"]))
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
        # Identity values follow the insert order (the postings' order): sorted, they
        # line up with the postings whatever order the rows came back in.
        posted.sort()
        return Posted(
            state,
            head["id"],
            head["created_at"],
            shortfall,
            posted,
            alerts,
            reloads,
            written,
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

    async def run_riders(self, riders: Sequence[Rider], transaction_id: int) -> None:
        """``riders`` in a statement of their own (the posting was made before)."""
        statement = riders_statement(tuple(r.sql for r in riders))
        values: dict[str, Any] = {"transaction_id": transaction_id}
        for rider in riders:
            values.update(rider.values)
        driver = await self._driver()
        await driver.execute(statement.sql, *statement.args(values))
        riders_written(riders)

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
        # The transaction's columns are named as StoredTransaction's fields, the postings'
        # listed in the order of StoredPosting's.
        postings = tuple(StoredPosting(*row) for row in rows)
        return StoredTransaction(**head._mapping, postings=postings)

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
                f"""
                SELECT coalesce(sum(b.balance), 0)::bigint
                FROM (SELECT CAST(:owner AS varchar) AS owner, CAST(:kind AS varchar) AS kind,
                             CAST(:currency AS varchar) AS currency) AS r
                CROSS JOIN {ACCOUNT_OF_KEY}
                JOIN ledger_balances b ON b.account_id = a.id
                """  # noqa: S608 - constants only
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
