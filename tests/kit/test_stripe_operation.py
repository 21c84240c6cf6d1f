"""``kit.stripe_operation``: the skeleton of a Stripe write (reserve, call, settle,
recover), run with a made-up operation on a table of its own, committed for real (the
skeleton's promise is about what is committed when Stripe is called)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.installation import outgoing_keys
from payments_api.kit.stripe_operation import (
    RETRY_POLICY,
    UNKNOWN,
    Attempt,
    StripeOperation,
    Unknown,
)

RETRY_JOB = "tests.stripe_operation.retry"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    id: int
    status: str
    attempts: int
    settled: int
    """How many times :meth:`Charge.settle` recorded an answer on the row."""


@dataclass
class Call:
    request: int
    key: str
    committed: Row
    """The row as another connection saw it while Stripe was being called."""


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Charge(StripeOperation[Row, int, str]):
    """A made-up Stripe write: charge a row's amount; Stripe's answers are scripted."""

    retry_job = RETRY_JOB
    name = "test_charge"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
        table: str,
        answers: list[str | Unknown],
        clock: Clock,
    ) -> None:
        super().__init__(sessionmaker, now=clock)
        self.engine = engine
        self.table = table
        self.answers = answers
        self.calls: list[Call] = []
        self.row_id = 0

    async def _row(self, session: AsyncSession, row_id: int, *, lock: bool = False) -> Row:
        suffix = " FOR UPDATE" if lock else ""
        found = (
            await session.execute(
                text(
                    f"SELECT id, status, attempts, settled FROM {self.table} WHERE id = :id{suffix}"
                ),
                {"id": row_id},
            )
        ).one()
        return Row(*found)

    async def claim(self, session: AsyncSession, row_id: int) -> tuple[Row, Attempt[int] | None]:
        row = await self._row(session, row_id, lock=True)
        if row.status != "pending":
            return row, None
        await session.execute(
            text(
                f"UPDATE {self.table} SET attempts = attempts + 1, next_attempt_at = :at "
                "WHERE id = :id"
            ),
            {"id": row_id, "at": self.next_attempt_at(row.attempts + 1)},
        )
        amount = await session.scalar(
            text(f"SELECT amount FROM {self.table} WHERE id = :id"), {"id": row_id}
        )
        return row, Attempt(int(amount), "test_charge", row_id, row.attempts + 1)

    async def call(self, request: int, idempotency_key: str) -> str | Unknown:
        # What is committed while Stripe is asked, read on a connection of its own.
        async with self.engine.connect() as other:
            seen = (
                await other.execute(
                    text(f"SELECT id, status, attempts, settled FROM {self.table} WHERE id = :id"),
                    {"id": self.row_id},
                )
            ).one_or_none()
        assert seen is not None, "the reserved row was not committed before the call"
        self.calls.append(Call(request, idempotency_key, Row(*seen)))
        return self.answers.pop(0)

    async def settle(self, session: AsyncSession, row_id: int, answer: str) -> Row:
        await session.execute(
            text(
                f"UPDATE {self.table} SET status = 'charged', settled = settled + 1, "
                "next_attempt_at = NULL WHERE id = :id AND status = 'pending'"
            ),
            {"id": row_id},
        )
        return await self._row(session, row_id)

    async def unknown(self, session: AsyncSession, row_id: int, attempt: Attempt[int]) -> Row:
        await self.schedule_retry(session, row_id, attempt.number)
        return await self._row(session, row_id)

    async def due(self, session: AsyncSession, now: datetime, limit: int) -> list[int]:
        found = await session.scalars(
            text(
                f"SELECT id FROM {self.table} WHERE status = 'pending' "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= :now) ORDER BY id LIMIT :n"
            ),
            {"now": now, "n": limit},
        )
        return list(found)

    async def charge(self, amount: int) -> Row:
        """Reserve a pending row, then run the operation for it."""
        async with self.reserve() as session:
            self.row_id = int(
                await session.scalar(
                    text(f"INSERT INTO {self.table} (amount) VALUES (:a) RETURNING id"),
                    {"a": amount},
                )
            )
        return await self.run(self.row_id)


@pytest.fixture
async def table(engine: AsyncEngine) -> AsyncIterator[str]:
    name = f"test_charges_{uuid.uuid4().hex[:12]}"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                f"CREATE TABLE {name} (id serial PRIMARY KEY, amount int NOT NULL, "
                "status text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0, "
                "settled int NOT NULL DEFAULT 0, next_attempt_at timestamptz)"
            )
        )
    yield name
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP TABLE {name}"))
        await connection.execute(
            text("DELETE FROM pgqueuer WHERE entrypoint = :e"), {"e": RETRY_JOB}
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def charge_op(
    engine: AsyncEngine, table: str, answers: list[str | Unknown], clock: Clock
) -> Charge:
    return Charge(async_sessionmaker(engine, expire_on_commit=False), engine, table, answers, clock)


async def queued_delays(engine: AsyncEngine, row_id: int) -> list[timedelta]:
    """The retry jobs queued for the row: how long after their enqueueing each is due."""
    async with engine.connect() as connection:
        found = await connection.scalars(
            text(
                "SELECT execute_after - created FROM pgqueuer "
                "WHERE entrypoint = :e AND payload = :p"
            ),
            {"e": RETRY_JOB, "p": str(row_id).encode()},
        )
        return list(found)


async def test_the_reserved_row_and_the_attempt_are_committed_before_stripe_is_called(
    engine: AsyncEngine, table: str, clock: Clock
) -> None:
    charge = charge_op(engine, table, ["ch_1"], clock)
    row = await charge.charge(1_250)
    [call] = charge.calls
    assert call.request == 1_250
    assert (call.committed.status, call.committed.attempts) == ("pending", 1)
    assert (row.status, row.attempts, row.settled) == ("charged", 1, 1)
    assert await queued_delays(engine, row.id) == []


async def test_an_unknown_outcome_queues_the_retry_after_the_policys_delay(
    engine: AsyncEngine, table: str, clock: Clock
) -> None:
    charge = charge_op(engine, table, [UNKNOWN, UNKNOWN], clock)
    row = await charge.charge(500)
    assert (row.status, row.attempts, row.settled) == ("pending", 1, 0)
    assert await queued_delays(engine, row.id) == [RETRY_POLICY.delay(1)]
    assert RETRY_POLICY.delay(1) == timedelta(seconds=30)

    # The worker took the job and runs it: unknown again, the next job waits twice as long.
    async with engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM pgqueuer WHERE entrypoint = :e"), {"e": RETRY_JOB}
        )
    row = await charge.run(row.id)
    assert (row.status, row.attempts) == ("pending", 2)
    assert await queued_delays(engine, row.id) == [RETRY_POLICY.delay(2)]
    assert RETRY_POLICY.delay(2) == timedelta(seconds=60)


async def test_recovery_asks_again_with_the_same_idempotency_key(
    engine: AsyncEngine, table: str, clock: Clock
) -> None:
    charge = charge_op(engine, table, [UNKNOWN, "ch_1"], clock)
    row = await charge.charge(700)
    # Not due before the policy's delay has passed.
    assert await charge.recover() == 0
    clock.now += RETRY_POLICY.delay(1)
    assert await charge.recover() == 1

    first, second = charge.calls
    expected = (await outgoing_keys(charge.sessionmaker)).derive("test_charge", row.id)
    assert first.key == second.key == expected
    assert (first.request, second.request) == (700, 700)
    assert (second.committed.status, second.committed.attempts) == ("pending", 2)


async def test_a_duplicate_recovery_neither_asks_nor_settles_again(
    engine: AsyncEngine, table: str, clock: Clock
) -> None:
    charge = charge_op(engine, table, [UNKNOWN, "ch_1"], clock)
    row = await charge.charge(900)
    clock.now += RETRY_POLICY.delay(1)
    # The queued job and the sweep both come for the row.
    settled = await charge.run(row.id)
    assert await charge.recover() == 0
    again = await charge.run(row.id)

    assert len(charge.calls) == 2  # the first try and the job; the duplicates asked nothing
    assert (settled.status, settled.settled) == ("charged", 1)
    assert (again.status, again.settled) == ("charged", 1)
