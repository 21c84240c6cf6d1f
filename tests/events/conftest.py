from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.settings import Settings


@dataclass
class Clock:
    """A controlled clock: retries become due when the test says time has passed."""

    moment: datetime

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


@pytest.fixture
def clock() -> Clock:
    # Whole seconds, ahead of the database's clock, which stamps new deliveries as
    # due at its now(): they are due at once on this clock.
    return Clock(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10))


@pytest.fixture
def event_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"events_allow_private_addresses": True, "events_delivery_timeout_seconds": 2.0}
    )


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that commit for real (each its own connection, as two workers have);
    whatever the test registered and emitted is removed afterwards."""
    async with engine.connect() as connection:
        floor = {
            table: int(
                await connection.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table}")) or 0
            )
            for table in ("events", "webhook_endpoints")
        }
    yield async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "DELETE FROM event_delivery_attempts WHERE delivery_id IN (SELECT id FROM "
                "event_deliveries WHERE event_id > :e OR endpoint_id > :w)"
            ),
            {"e": floor["events"], "w": floor["webhook_endpoints"]},
        )
        await connection.execute(
            text("DELETE FROM event_deliveries WHERE event_id > :e OR endpoint_id > :w"),
            {"e": floor["events"], "w": floor["webhook_endpoints"]},
        )
        await connection.execute(
            text("DELETE FROM email_receipts WHERE event_id > :e"), {"e": floor["events"]}
        )
        await connection.execute(text("DELETE FROM events WHERE id > :e"), {"e": floor["events"]})
        await connection.execute(
            text("DELETE FROM webhook_endpoints WHERE id > :w"), {"w": floor["webhook_endpoints"]}
        )
