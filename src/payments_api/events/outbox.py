"""Write an event in the caller's transaction: the transactional outbox.

``emit`` is called by the services at the moment a business change happens, on the
session that makes the change. The event row, and a delivery row for every enabled
endpoint that wants its type, are one statement in that transaction; so a rolled-back
change leaves no event, and a committed one always has its event. ``change_key`` names
the change (``escrow:12:completed``): emitting it again (a redelivered Stripe event, a
retried request, a recovery job) writes nothing.

When at least one delivery was written, a delivery job is queued in the same
transaction; with no endpoints registered an event costs one INSERT.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import driver_connection
from payments_api.events.types import EventType
from payments_api.jobs.queue import enqueue

DELIVER_JOB = "events.deliver"

# Hand-written and sent on the session's own asyncpg connection (prepared once per
# connection by asyncpg's statement cache): this runs with every business change, and
# SQLAlchemy's per-statement work was most of its cost (bench/events.py).
_EMIT = """
    WITH event AS (
        INSERT INTO events (type, change_key, user_ids, payload)
        VALUES ($1, $2, $3::varchar[], $4::jsonb)
        ON CONFLICT (change_key) DO NOTHING
        RETURNING id, type
    ), deliveries AS (
        INSERT INTO event_deliveries (event_id, endpoint_id)
        SELECT event.id, endpoint.id
        FROM event
        JOIN webhook_endpoints AS endpoint
          ON endpoint.status = 'enabled'
         AND ($5::bigint IS NULL AND (
                  cardinality(endpoint.event_types) = 0
                  OR event.type = ANY(endpoint.event_types))
              OR endpoint.id = $5::bigint)
        RETURNING id
    )
    SELECT (SELECT id FROM event) AS event_id, (SELECT count(*) FROM deliveries) AS deliveries
"""


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
    payload = subject.model_dump(mode="json")
    driver = await driver_connection(session)
    row = await driver.fetchrow(
        _EMIT,
        type.value,
        change_key,
        sorted({user for user in user_ids if user}),
        json.dumps(payload, separators=(",", ":")),
        only_endpoint,
    )
    event_id: int | None = row["event_id"]
    if event_id is not None and row["deliveries"]:
        await enqueue(session, DELIVER_JOB, f"event:{event_id}".encode())
    return event_id
