"""SQL of the idempotency_keys table. Every time comparison uses the database clock, so
replicas with drifting clocks agree on leases and expiry.

The statements every write request runs (claim, complete, release, renew the lease) are
hand-written, compiled once at import by SQLAlchemy's asyncpg dialect, and run on the
session's own asyncpg connection, as the ledger's hot path does: measured in ``bench/``,
building them as ORM statements per request (cache keys of the DML values, operator
coercions, ORM result processing) cost more client CPU than the round trips themselves.

They run inside the session's transaction when it has one (a one-transaction route:
the claim is the first statement of the route's transaction, the response is stored
just before its COMMIT); on a session that has sent nothing yet (the lease protocol's
steps) each statement is its own transaction, committed by PostgreSQL as it completes,
so a step costs one round trip instead of three (BEGIN, statement, COMMIT).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import RawStatement, Rider, driver_connection
from payments_api.idempotency.models import IdempotencyKey, IdempotencyStatus
from payments_api.users.repository import USER_COLUMNS

IN_FLIGHT = IdempotencyStatus.in_flight.value
COMPLETED = IdempotencyStatus.completed.value

_KEY_COLUMNS = """k.id, k.fingerprint, k.request_method, k.request_path, k.status,
       k.locked_until, k.expires_at, k.response_status, k.response_headers,
       k.response_body"""

# Concurrent requests with one (user, key) are told apart by a transaction-level advisory
# lock on the pair, taken by the claim: a route that runs in one transaction with its
# key (``IdempotencyMiddleware``, DB-only routes) holds it until it commits or rolls
# back, so a twin does not wait on the uncommitted row and answers 409 at once, as it
# does for a key in flight under a lease. A self-committing claim (the lease protocol)
# holds it for its one statement only. The two-int form keeps these locks apart from
# any one-bigint advisory lock (pgqueuer's); a hash collision between two keys in
# flight at the same instant costs a spurious 409 with ``Retry-After: 1``.
ADVISORY_LOCK_CLASS = 0x1DE0  # arbitrary, constant: "idempotency keys"

# The caller's user row, read with the claim when it inserted (the request will run): a
# route running in the claim's transaction then needs no statement of its own for it
# (``UserRepository.adopt``).
_USER_COLUMNS = ", ".join(f"u.{name} AS u_{name}" for name in USER_COLUMNS)

# The first request's insert and, when the key exists already, its row, in one round
# trip. The row is read with the statement's snapshot: a twin that committed while
# this statement ran is not visible to it (no row, no insert), and the caller then reads
# it again with ``SELECT_KEY``. Nothing is inserted when the lock is held elsewhere.
CLAIM = RawStatement.of(
    text(
        f"""
        WITH lock AS (
            SELECT pg_try_advisory_xact_lock(
                {ADVISORY_LOCK_CLASS},
                hashtext(CAST(:user_id AS text) || chr(31) || CAST(:key AS text))
            ) AS held
        ),
        inserted AS (
            INSERT INTO idempotency_keys
                (user_id, key, fingerprint, request_method, request_path, status,
                 lease_token, locked_until, expires_at)
            SELECT CAST(:user_id AS text), CAST(:key AS text), CAST(:fingerprint AS text),
                   CAST(:method AS text), CAST(:path AS text), '{IN_FLIGHT}',
                   CAST(:lease_token AS uuid), now() + CAST(:lease AS interval),
                   now() + CAST(:retention AS interval)
            FROM lock
            WHERE lock.held
            ON CONFLICT (user_id, key) DO NOTHING
            RETURNING id
        )
        SELECT lock.held, inserted.id AS inserted_id, {_KEY_COLUMNS}, now() AS now,
               {_USER_COLUMNS}
        FROM lock
        LEFT JOIN inserted ON true
        LEFT JOIN idempotency_keys k
          ON inserted.id IS NULL AND k.user_id = :user_id AND k.key = :key
        LEFT JOIN users u ON inserted.id IS NOT NULL AND u.id = :user_id
        """  # noqa: S608 - constants only
    )
)

SELECT_KEY = RawStatement.of(
    text(
        f"""
        SELECT {_KEY_COLUMNS}, now() AS now
        FROM idempotency_keys k
        WHERE k.user_id = :user_id AND k.key = :key
        """  # noqa: S608 - constants only
    )
)

# Claim an in-flight key whose lease has run out; the lease condition is re-checked
# under the row lock, so of two retries only one takes it.
TAKE_OVER = RawStatement.of(
    text(
        f"""
        UPDATE idempotency_keys
        SET lease_token = :lease_token, locked_until = now() + CAST(:lease AS interval)
        WHERE id = :id AND status = '{IN_FLIGHT}' AND locked_until < now()
        RETURNING id
        """  # noqa: S608 - constants only
    )
)

RECYCLE_EXPIRED = RawStatement.of(
    text(
        f"""
        UPDATE idempotency_keys
        SET fingerprint = :fingerprint, request_method = :method, request_path = :path,
            status = '{IN_FLIGHT}', lease_token = :lease_token,
            locked_until = now() + CAST(:lease AS interval),
            response_status = NULL, response_headers = NULL, response_body = NULL,
            created_at = now(), expires_at = now() + CAST(:retention AS interval)
        WHERE id = :id AND expires_at <= now()
        RETURNING id
        """  # noqa: S608 - constants only
    )
)

EXTEND_LEASE = RawStatement.of(
    text(
        f"""
        UPDATE idempotency_keys
        SET locked_until = now() + CAST(:lease AS interval)
        WHERE id = :id AND status = '{IN_FLIGHT}' AND lease_token = :lease_token
        RETURNING id
        """  # noqa: S608 - constants only
    )
)

COMPLETE = RawStatement.of(
    text(
        f"""
        UPDATE idempotency_keys
        SET status = '{COMPLETED}', locked_until = NULL, response_status = :status,
            response_headers = CAST(:headers AS jsonb), response_body = :body
        WHERE id = :id AND lease_token = :lease_token
        RETURNING id
        """  # noqa: S608 - constants only
    )
)
"""The lease token is the request's own: a retry that took the key over holds another.
A row completed already under the same token is this request's too (a response stored
by a statement of the route, ``COMPLETE_RIDING``, replaced by the one it answered)."""

COMPLETE_RIDING = f"""
    idempotency_response AS (
        UPDATE idempotency_keys
        SET status = '{COMPLETED}', locked_until = NULL,
            response_status = CAST(:idempotency_status AS smallint),
            response_headers = CAST(:idempotency_headers AS jsonb),
            response_body = CAST(:idempotency_body AS bytea)
        FROM posted_transaction
        WHERE idempotency_keys.id = CAST(:idempotency_id AS bigint)
          AND idempotency_keys.lease_token = CAST(:idempotency_lease_token AS uuid)
    )
"""  # noqa: S608 - constants only

RELEASE = RawStatement.of(
    text(
        f"""
        DELETE FROM idempotency_keys
        WHERE id = :id AND status = '{IN_FLIGHT}' AND lease_token = :lease_token
        RETURNING id
        """  # noqa: S608 - constants only
    )
)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A stored key as a claim sees it, with the database's current time."""

    id: int
    fingerprint: str
    request_method: str
    request_path: str
    status: str
    locked_until: datetime | None
    expires_at: datetime
    response_status: int | None
    response_headers: list[list[str]] | None
    response_body: bytes | None
    now: datetime

    @classmethod
    def of(cls, row: Any) -> KeyRow:
        headers = row["response_headers"]
        return cls(
            id=row["id"],
            fingerprint=row["fingerprint"],
            request_method=row["request_method"],
            request_path=row["request_path"],
            status=row["status"],
            locked_until=row["locked_until"],
            expires_at=row["expires_at"],
            response_status=row["response_status"],
            # SQLAlchemy's asyncpg dialect hands JSON over as text on its connections.
            response_headers=json.loads(headers) if isinstance(headers, str) else headers,
            response_body=row["response_body"],
            now=row["now"],
        )


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """What ``claim`` found: the id it inserted, else the existing row if visible, and
    whether it holds the key's advisory lock (False: another transaction runs with it)."""

    inserted_id: int | None
    existing: KeyRow | None
    locked: bool = True
    user: dict[str, Any] | None = None
    """With ``inserted_id``: the caller's user row (column -> value), None if it has none."""


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """What a claim writes into the key row it takes, a new one or an expired one
    recycled: the request it is for and the lease it holds."""

    fingerprint: str
    method: str
    path: str
    lease_token: uuid.UUID
    lease: timedelta
    retention: timedelta

    def values(self) -> dict[str, Any]:
        """The fields as statement parameters, as they are. (``dataclasses.asdict``
        deep-copies each, the lease token included: a visible share of a write
        request's CPU.)"""
        return {name: getattr(self, name) for name in self.__slots__}


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _driver(self) -> Any:
        # begin=False: in the session's transaction if it has begun one, otherwise
        # each statement commits on its own (see the module docstring).
        return await driver_connection(self.session, begin=False)

    async def _fetchval(self, statement: RawStatement, values: dict[str, Any]) -> Any:
        driver = await self._driver()
        return await driver.fetchval(statement.sql, *statement.args(values))

    async def claim(self, *, user_id: str, key: str, terms: LeaseTerms) -> ClaimRow:
        """Insert the key as in flight or, when (user_id, key) exists, read its row.
        Inserts nothing while another transaction holds the key's advisory lock."""
        driver = await self._driver()
        row = await driver.fetchrow(
            CLAIM.sql, *CLAIM.args({"user_id": user_id, "key": key, **terms.values()})
        )
        if row["inserted_id"] is not None:
            user = (
                None if row["u_id"] is None else {name: row[f"u_{name}"] for name in USER_COLUMNS}
            )
            return ClaimRow(int(row["inserted_id"]), None, user=user)
        existing = None if row["id"] is None else KeyRow.of(row)
        return ClaimRow(None, existing, locked=bool(row["held"]))

    async def get(self, user_id: str, key: str) -> KeyRow | None:
        """The key's row and the database's current time."""
        driver = await self._driver()
        row = await driver.fetchrow(
            SELECT_KEY.sql, *SELECT_KEY.args({"user_id": user_id, "key": key})
        )
        return None if row is None else KeyRow.of(row)

    async def take_over(self, record_id: int, *, lease_token: uuid.UUID, lease: timedelta) -> bool:
        """Claim an in-flight key whose lease has run out; False if another request got
        there first. Atomic: the lease condition is re-checked under the row lock."""
        values = {"id": record_id, "lease_token": lease_token, "lease": lease}
        return await self._fetchval(TAKE_OVER, values) is not None

    async def recycle_expired(self, record_id: int, terms: LeaseTerms) -> bool:
        """Start over on a key past its retention that was not pruned yet: it is free
        again, as if it had never been used."""
        return (
            await self._fetchval(RECYCLE_EXPIRED, {"id": record_id, **terms.values()}) is not None
        )

    async def extend_lease(
        self, record_id: int, *, lease_token: uuid.UUID, lease: timedelta
    ) -> bool:
        values = {"id": record_id, "lease_token": lease_token, "lease": lease}
        return await self._fetchval(EXTEND_LEASE, values) is not None

    async def complete(
        self,
        record_id: int,
        *,
        lease_token: uuid.UUID,
        status: int,
        headers: list[list[str]],
        body: bytes,
    ) -> bool:
        values = {
            "id": record_id,
            "lease_token": lease_token,
            "status": status,
            "headers": json.dumps(headers),
            "body": body,
        }
        return await self._fetchval(COMPLETE, values) is not None

    @staticmethod
    def complete_riding(
        record_id: int,
        *,
        lease_token: uuid.UUID,
        status: int,
        headers: list[list[str]],
        body: bytes,
        on_written: Callable[[], None],
    ) -> Rider:
        """:meth:`complete` as a rider of another statement (``db.Rider``)."""
        values = {
            "idempotency_id": record_id,
            "idempotency_lease_token": lease_token,
            "idempotency_status": status,
            "idempotency_headers": json.dumps(headers),
            "idempotency_body": body,
        }
        return Rider(COMPLETE_RIDING, values, on_written=on_written)

    async def release(self, record_id: int, *, lease_token: uuid.UUID) -> bool:
        values = {"id": record_id, "lease_token": lease_token}
        return await self._fetchval(RELEASE, values) is not None

    async def delete_expired(self, *, limit: int | None = None) -> int:
        """Delete keys past their retention, except one whose request still holds a
        lease. With ``limit``, at most that many (oldest first), skipping rows another
        pruner has locked."""
        expired = (IdempotencyKey.expires_at <= func.now()) & (
            (IdempotencyKey.status == COMPLETED) | (IdempotencyKey.locked_until < func.now())
        )
        if limit is None:
            statement = delete(IdempotencyKey).where(expired)
        else:
            batch = (
                select(IdempotencyKey.id)
                .where(expired)
                .order_by(IdempotencyKey.expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            statement = delete(IdempotencyKey).where(IdempotencyKey.id.in_(batch.scalar_subquery()))
        result = await self.session.execute(statement.execution_options(synchronize_session=False))
        return cast("CursorResult[Any]", result).rowcount
