"""SQL of the idempotency_keys table. Every time comparison uses the database clock, so
replicas with drifting clocks agree on leases and expiry."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.idempotency.models import IdempotencyKey, IdempotencyStatus

IN_FLIGHT = IdempotencyStatus.in_flight.value
COMPLETED = IdempotencyStatus.completed.value


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_in_flight(
        self,
        *,
        user_id: str,
        key: str,
        fingerprint: str,
        method: str,
        path: str,
        lease_token: uuid.UUID,
        lease: timedelta,
        retention: timedelta,
    ) -> int | None:
        """Insert the key as in flight; None when (user_id, key) already exists. A
        concurrent uncommitted insert of the same key makes this wait for its commit."""
        statement = (
            insert(IdempotencyKey)
            .values(
                user_id=user_id,
                key=key,
                fingerprint=fingerprint,
                request_method=method,
                request_path=path,
                status=IN_FLIGHT,
                lease_token=lease_token,
                locked_until=func.now() + lease,
                expires_at=func.now() + retention,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(IdempotencyKey.id)
        )
        inserted: int | None = (await self.session.execute(statement)).scalar_one_or_none()
        return inserted

    async def get(self, user_id: str, key: str) -> tuple[IdempotencyKey, datetime] | None:
        """The key's row and the database's current time."""
        statement = (
            select(IdempotencyKey, func.now())
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def _update(self, record_id: int, *conditions: Any, **values: Any) -> bool:
        statement = (
            update(IdempotencyKey)
            .where(IdempotencyKey.id == record_id, *conditions)
            .values(**values)
            .returning(IdempotencyKey.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def take_over(self, record_id: int, *, lease_token: uuid.UUID, lease: timedelta) -> bool:
        """Claim an in-flight key whose lease has run out; False if another request got
        there first. Atomic: the lease condition is re-checked under the row lock."""
        return await self._update(
            record_id,
            IdempotencyKey.status == IN_FLIGHT,
            IdempotencyKey.locked_until < func.now(),
            lease_token=lease_token,
            locked_until=func.now() + lease,
        )

    async def recycle_expired(
        self,
        record_id: int,
        *,
        fingerprint: str,
        method: str,
        path: str,
        lease_token: uuid.UUID,
        lease: timedelta,
        retention: timedelta,
    ) -> bool:
        """Start over on a key past its retention that was not pruned yet: it is free
        again, as if it had never been used."""
        return await self._update(
            record_id,
            IdempotencyKey.expires_at <= func.now(),
            fingerprint=fingerprint,
            request_method=method,
            request_path=path,
            status=IN_FLIGHT,
            lease_token=lease_token,
            locked_until=func.now() + lease,
            response_status=None,
            response_headers=None,
            response_body=None,
            created_at=func.now(),
            expires_at=func.now() + retention,
        )

    async def extend_lease(
        self, record_id: int, *, lease_token: uuid.UUID, lease: timedelta
    ) -> bool:
        return await self._update(
            record_id,
            IdempotencyKey.status == IN_FLIGHT,
            IdempotencyKey.lease_token == lease_token,
            locked_until=func.now() + lease,
        )

    async def complete(
        self,
        record_id: int,
        *,
        lease_token: uuid.UUID,
        status: int,
        headers: list[list[str]],
        body: bytes,
    ) -> bool:
        return await self._update(
            record_id,
            IdempotencyKey.status == IN_FLIGHT,
            IdempotencyKey.lease_token == lease_token,
            status=COMPLETED,
            locked_until=None,
            response_status=status,
            response_headers=headers,
            response_body=body,
        )

    async def release(self, record_id: int, *, lease_token: uuid.UUID) -> bool:
        statement = (
            delete(IdempotencyKey)
            .where(
                IdempotencyKey.id == record_id,
                IdempotencyKey.status == IN_FLIGHT,
                IdempotencyKey.lease_token == lease_token,
            )
            .returning(IdempotencyKey.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

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
