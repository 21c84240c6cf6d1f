"""Write an event in the caller's transaction: the transactional outbox.

``emit`` is called by the services at the moment a business change happens, on the
session that makes the change. The event row, and a delivery row for every enabled
endpoint that wants its type, are one statement in that transaction; so a rolled-back
change leaves no event, and a committed one always has its event. ``change_key`` names
the change (``escrow:12:completed``): emitting it again (a redelivered Stripe event, a
retried request, a recovery job) writes nothing.

When at least one delivery was written, a delivery job is queued in the same
transaction; with no endpoints registered an event costs one INSERT.

A change that ends with a ledger posting can hand its event to the ledger instead
(:func:`stage`, then ``NewTransaction.event``): the ledger writes it with
:data:`EVENT_CTES` in the statement that inserts the postings, so the event costs no
round trip of its own (bench/events.py), and calls :func:`written` with what that
statement returned. The guarantees are the same: one statement of the change's
transaction, ``change_key`` unique, the payload serialized here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import RawStatement, driver_connection
from payments_api.events.types import EventType
from payments_api.jobs.queue import enqueue

DELIVER_JOB = "events.deliver"

# The event row and its deliveries, as common table expressions named ``event`` and
# ``deliveries``: the whole of ``emit``'s statement, and a part of the ledger's posting
# statement for staged events. Parameters are prefixed ``event_``.
_EVENT_COLUMNS = """CAST(:event_type AS varchar), CAST(:event_change_key AS varchar),
                CAST(:event_user_ids AS varchar[]), CAST(:event_payload AS jsonb)"""


def _event_ctes(source: str) -> str:
    return f"""
    event AS (
        INSERT INTO events (type, change_key, user_ids, payload)
        {source}
        ON CONFLICT (change_key) DO NOTHING
        RETURNING id, type
    ), deliveries AS (
        INSERT INTO event_deliveries (event_id, endpoint_id)
        SELECT event.id, endpoint.id
        FROM event
        JOIN webhook_endpoints AS endpoint
          ON endpoint.status = 'enabled'
         AND (CAST(:event_only_endpoint AS bigint) IS NULL AND (
                  cardinality(endpoint.event_types) = 0
                  OR event.type = ANY(endpoint.event_types))
              OR endpoint.id = CAST(:event_only_endpoint AS bigint))
        RETURNING id
    )
"""  # noqa: S608 - constants only


EVENT_CTES = _event_ctes(f"VALUES ({_EVENT_COLUMNS})")
# EVENT_CTES for the ledger's posting statement: the event is written only when the
# transaction was (its common table expression ``posted_transaction`` has a row).
GATED_EVENT_CTES = _event_ctes(
    f"SELECT {_EVENT_COLUMNS}\n        WHERE EXISTS (SELECT FROM posted_transaction)"  # noqa: S608
)

# Hand-written and sent on the session's own asyncpg connection (prepared once per
# connection by asyncpg's statement cache): this runs with every business change, and
# SQLAlchemy's per-statement work was most of its cost (bench/events.py).
_EMIT_SELECT = """
    SELECT (SELECT id FROM event) AS event_id, (SELECT count(*) FROM deliveries) AS deliveries
"""
EMIT = RawStatement.of(text(f"WITH {EVENT_CTES}{_EMIT_SELECT}"))


@dataclass(frozen=True, slots=True)
class StagedEvent:
    """An event ready to be written: its payload is serialized already."""

    type: str
    change_key: str
    user_ids: list[str]
    payload: str
    """The subject as JSON text (the REST resource)."""
    only_endpoint: int | None = None

    def params(self) -> dict[str, Any]:
        """The values of :data:`EVENT_CTES`' parameters."""
        return {
            "event_type": self.type,
            "event_change_key": self.change_key,
            "event_user_ids": self.user_ids,
            "event_payload": self.payload,
            "event_only_endpoint": self.only_endpoint,
        }


def stage(
    type: EventType,
    subject: BaseModel,
    *,
    change_key: str,
    user_ids: Iterable[str | None] = (),
    only_endpoint: int | None = None,
) -> StagedEvent:
    """The event of ``subject`` changing as ``type``, not written yet. The payload is
    serialized once, by pydantic's own JSON serializer (``mode="json"`` output)."""
    return StagedEvent(
        type=type.value,
        change_key=change_key,
        user_ids=sorted({user for user in user_ids if user}),
        payload=subject.model_dump_json(),
        only_endpoint=only_endpoint,
    )


async def emit(
    session: AsyncSession,
    type: EventType,
    subject: BaseModel,
    *,
    change_key: str,
    user_ids: Iterable[str | None] = (),
    only_endpoint: int | None = None,
) -> int | None:
    """Record that ``subject`` changed as ``type``; the id of the new event, or None
    when this change was already recorded."""
    return await emit_staged(
        session,
        stage(type, subject, change_key=change_key, user_ids=user_ids, only_endpoint=only_endpoint),
    )


async def emit_staged(session: AsyncSession, event: StagedEvent) -> int | None:
    """Write a staged event in its own statement (see :func:`emit`)."""
    driver = await driver_connection(session)
    row = await driver.fetchrow(EMIT.sql, *EMIT.args(event.params()))
    return await written(session, row["event_id"], row["deliveries"])


async def written(session: AsyncSession, event_id: int | None, deliveries: int) -> int | None:
    """After the event's statement ran: queue the delivery job when it wrote a delivery.
    ``event_id`` None: the change was recorded before (nothing was written)."""
    if event_id is not None and deliveries:
        await enqueue(session, DELIVER_JOB, f"event:{event_id}".encode())
    return event_id
