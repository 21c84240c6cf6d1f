"""SQL of the sandbox: its objects, idempotency records and event outbox."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, cast, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import QueryableAttribute, flag_modified
from sqlalchemy.sql.elements import ColumnElement

from payments_api.jobs.queue import enqueue
from payments_api.kit.clock import utcnow
from payments_sandbox.models import SandboxEvent, SandboxIdempotencyKey, SandboxObject

DELIVER_JOB = "sandbox.events.deliver"
"""The job that makes one delivery attempt of one sandbox event (payload: ``<event
id>:<attempts made when it was queued>``), run by ``payments_sandbox.events.deliver_event``."""


def created_bounds(
    document: QueryableAttribute[dict[str, Any]], created: dict[str, int] | None
) -> list[ColumnElement[bool]]:
    """Stripe's ``created[gt|gte|lt|lte]`` list filters on a JSON document's ``created``."""
    # bigint: a `created` bound is any 64-bit integer (-25387020000 is a valid query).
    created_at = cast(document["created"].astext, BigInteger)
    return [
        {
            "gt": created_at > bound,
            "gte": created_at >= bound,
            "lt": created_at < bound,
            "lte": created_at <= bound,
        }[op]
        for op, bound in (created or {}).items()
    ]


class ObjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, object_id: str, *, for_update: bool = False) -> SandboxObject | None:
        query = select(SandboxObject).where(SandboxObject.id == object_id)
        return await self.session.scalar(query.with_for_update() if for_update else query)

    async def add(
        self,
        type_: str,
        body: dict[str, Any],
        *,
        account: str | None = None,
        private: dict[str, Any] | None = None,
    ) -> SandboxObject:
        row = SandboxObject(
            id=body["id"], type=type_, account=account, body=body, private=private or {}
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def save(
        self, row: SandboxObject, body: dict[str, Any], private: dict[str, Any] | None = None
    ) -> None:
        # Callers edit the loaded dicts in place, which SQLAlchemy cannot see (the old
        # and new values compare equal): copy and flag the columns as changed.
        row.body = copy.deepcopy(body)
        flag_modified(row, "body")
        if private is not None:
            row.private = copy.deepcopy(private)
            flag_modified(row, "private")
        row.updated_at = utcnow()
        await self.session.flush()

    async def page(
        self,
        type_: str,
        *,
        account: str | None,
        filters: dict[str, str] | None = None,
        created: dict[str, int] | None = None,
        limit: int = 10,
        starting_after: int | None = None,
        ending_before: int | None = None,
        any_account: bool = False,
    ) -> tuple[list[SandboxObject], bool]:
        """Newest first, Stripe's cursor rules: ``(rows, has_more)``."""
        query = select(SandboxObject).where(SandboxObject.type == type_)
        if not any_account:
            query = query.where(
                SandboxObject.account.is_(None)
                if account is None
                else SandboxObject.account == account
            )
        for field, value in (filters or {}).items():
            query = query.where(SandboxObject.body[field].astext == value)
        query = query.where(*created_bounds(SandboxObject.body, created))
        if ending_before is not None:
            # The page just before (newer than) the cursor, still returned newest first.
            query = query.where(SandboxObject.seq > ending_before)
            rows = list(
                await self.session.scalars(query.order_by(SandboxObject.seq).limit(limit + 1))
            )
            has_more = len(rows) > limit
            return list(reversed(rows[:limit])), has_more
        if starting_after is not None:
            query = query.where(SandboxObject.seq < starting_after)
        rows = list(
            await self.session.scalars(query.order_by(SandboxObject.seq.desc()).limit(limit + 1))
        )
        return rows[:limit], len(rows) > limit

    async def recent(self, types: list[str], limit: int = 50) -> list[SandboxObject]:
        query = (
            select(SandboxObject)
            .where(SandboxObject.type.in_(types))
            .order_by(SandboxObject.seq.desc())
            .limit(limit)
        )
        return list(await self.session.scalars(query))

    async def balance(self, account: str | None) -> list[tuple[str, str, int]]:
        """``(currency, status, sum of net)`` of the account's balance transactions."""
        query = text(
            "SELECT body->>'currency', body->>'status', sum((body->>'net')::bigint)"
            " FROM sandbox_objects WHERE type = 'balance_transaction'"
            " AND account IS NOT DISTINCT FROM :account GROUP BY 1, 2"
        )
        rows = (await self.session.execute(query, {"account": account})).all()
        return [(str(c), str(s), int(n)) for c, s, n in rows]

    async def expired_sessions(self, now: int, limit: int) -> list[str]:
        """Open Checkout Sessions whose ``expires_at`` has passed."""
        body = SandboxObject.body
        query = (
            select(SandboxObject.id)
            .where(SandboxObject.type == "checkout.session")
            .where(body["status"].astext == "open")
            .where(body["expires_at"].as_integer().cast(Integer) <= now)
            .limit(limit)
        )
        return list(await self.session.scalars(query))


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, scope: str, key: str, fingerprint: str, request_id: str) -> bool:
        """Take the key for this request. False: another request holds or held it (a
        concurrent twin's insert is waited for, so the caller then finds it stored)."""
        statement = (
            insert(SandboxIdempotencyKey)
            .values(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                status_code=0,
                response={},
                request_id=request_id,
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(SandboxIdempotencyKey.key)
        )
        return (await self.session.scalar(statement)) is not None

    async def get(self, scope: str, key: str) -> SandboxIdempotencyKey | None:
        result: SandboxIdempotencyKey | None = await self.session.get(
            SandboxIdempotencyKey, (scope, key), populate_existing=True
        )
        return result

    async def store(self, scope: str, key: str, status_code: int, response: dict[str, Any]) -> None:
        await self.session.execute(
            update(SandboxIdempotencyKey)
            .where(SandboxIdempotencyKey.scope == scope, SandboxIdempotencyKey.key == key)
            .values(status_code=status_code, response=response)
        )

    async def prune(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(SandboxIdempotencyKey).where(SandboxIdempotencyKey.created_at < before)
        )
        return int(getattr(result, "rowcount", 0) or 0)


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, payload: dict[str, Any]) -> SandboxEvent:
        """The event in the outbox, and its delivery job on the service's job queue, in
        the caller's transaction: delivered if and only if the change commits."""
        row = SandboxEvent(
            id=payload["id"],
            type=payload["type"],
            account=payload.get("account"),
            payload=payload,
            status="pending",
            attempts=0,
        )
        self.session.add(row)
        await self.session.flush()
        await self.queue_delivery(row.id, 0)
        return row

    async def queue_delivery(
        self, event_id: str, attempts: int, *, delay: timedelta | None = None
    ) -> None:
        """Enqueue the ``sandbox.events.deliver`` job of ``event_id`` (pgqueuer): the
        attempt after ``attempts`` (a job whose event was attempted meanwhile, by a twin
        job, does nothing)."""
        payload = f"{event_id}:{attempts}".encode()
        await enqueue(self.session, DELIVER_JOB, payload, delay=delay)

    async def get(self, event_id: str) -> SandboxEvent | None:
        return await self.session.get(SandboxEvent, event_id)

    async def overdue(self, before: datetime) -> list[tuple[str, int]]:
        """Pending events (id, attempts) due before ``before``, oldest first: their
        delivery job is lost (a delivery in flight leases its event, a retry's job is
        due at its time)."""
        query = (
            select(SandboxEvent.id, SandboxEvent.attempts)
            .where(SandboxEvent.status == "pending", SandboxEvent.next_attempt_at < before)
            .order_by(SandboxEvent.seq)
        )
        return [(event_id, attempts) for event_id, attempts in await self.session.execute(query)]

    async def recent(self, limit: int = 50) -> list[SandboxEvent]:
        query = select(SandboxEvent).order_by(SandboxEvent.seq.desc()).limit(limit)
        return list(await self.session.scalars(query))

    async def pending_count(self) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(SandboxEvent)
                .where(SandboxEvent.status == "pending")
            )
            or 0
        )

    async def page(
        self,
        *,
        account: str | None,
        types: list[str] | None,
        limit: int,
        starting_after: int | None,
        delivered: bool | None = None,
        created: dict[str, int] | None = None,
    ) -> tuple[list[SandboxEvent], bool]:
        query = select(SandboxEvent)
        if delivered is not None:
            query = query.where(
                SandboxEvent.status == "delivered"
                if delivered
                else SandboxEvent.status != "delivered"
            )
        query = query.where(*created_bounds(SandboxEvent.payload, created))
        query = query.where(
            SandboxEvent.account.is_(None) if account is None else SandboxEvent.account == account
        )
        if types:
            query = query.where(or_(*(SandboxEvent.type == t for t in types)))
        if starting_after is not None:
            query = query.where(and_(SandboxEvent.seq < starting_after))
        rows = list(
            await self.session.scalars(query.order_by(SandboxEvent.seq.desc()).limit(limit + 1))
        )
        return rows[:limit], len(rows) > limit
