"""One Stripe write that never happens twice and is never lost: the skeleton every
flow that asks Stripe to do something (a transfer, a capture, a refund) runs on.

No database transaction stays open across a Stripe call. Instead:

1. **reserve** (:meth:`StripeOperation.reserve`, one transaction): the flow writes its
   ``pending`` row (and whatever it holds with it), committed before Stripe hears of it;
2. **call** (:meth:`StripeOperation.run`, no transaction open): the flow's
   :meth:`~StripeOperation.claim` turns the row into a request (in a short transaction
   of its own that counts the attempt), and :meth:`~StripeOperation.call` sends it with
   the idempotency key derived from the row (``<namespace>:<operation>:<id>``,
   :mod:`payments_api.installation`), so every retry reaches the one object Stripe made;
3. **settle** (a new short transaction): Stripe's answer means what the flow says
   (:meth:`~StripeOperation.settle`), or, when the outcome is unknown (a timeout, a 5xx),
   :meth:`~StripeOperation.unknown` leaves the row pending for
4. **recover**: a job on the queue (:meth:`~StripeOperation.schedule_retry`, delayed by
   the one :data:`RETRY_POLICY`) or the flow's sweep (:meth:`~StripeOperation.recover`
   over :meth:`~StripeOperation.due`) runs step 2 again with the same key. A process
   that died between 1 and 2 is the same case.

The flow keeps only its domain rules: what to reserve, what to send, what the answer
means and how it finds rows left behind. It maps Stripe's errors itself (this module is
plumbing and knows no Stripe error), returning :data:`UNKNOWN` for "ask again".
Settling must be idempotent (a webhook, a second recovery and the answer may all
arrive): the flow checks the row is still pending, under its lock, before it records.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import ClassVar, Final, Generic, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.installation import outgoing_keys
from payments_api.jobs.queue import enqueue
from payments_api.kit.backoff import doubling_delay
from payments_api.kit.clock import utcnow

log = logging.getLogger(__name__)

RowT = TypeVar("RowT")
RequestT = TypeVar("RequestT")
AnswerT = TypeVar("AnswerT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to ask Stripe again after an attempt whose outcome is unknown."""

    first: timedelta
    cap: timedelta

    def delay(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` attempts (doubling from ``first``, capped)."""
        return doubling_delay(attempts, first=self.first, cap=self.cap)


RETRY_POLICY: Final = RetryPolicy(first=timedelta(seconds=30), cap=timedelta(hours=1))
"""The one retry policy of Stripe operations: 30 s, 1 min, 2 min, ... at most an hour."""


class _Unknown(Enum):
    UNKNOWN = "unknown"


UNKNOWN: Final = _Unknown.UNKNOWN
"""What :meth:`StripeOperation.call` returns when Stripe's outcome is not known (the
request timed out, Stripe was down): the row stays pending and is asked again."""

Unknown = Literal[_Unknown.UNKNOWN]


@dataclass(frozen=True, slots=True)
class Attempt(Generic[RequestT]):
    """One try at Stripe, as :meth:`StripeOperation.claim` decided it."""

    request: RequestT
    """What the flow sends (its parameters, read from the row)."""
    operation: str
    """The key's operation (``withdrawal``, ``escrow_capture``)."""
    record_id: int | str
    """The key's record: the row's id, or the id plus a round when a row asks anew."""
    number: int = 1
    """Attempts so far, this one included (what :data:`RETRY_POLICY` delays by)."""


async def call_with_key(
    source: AsyncSession | async_sessionmaker[AsyncSession],
    operation: str,
    record_id: int | str,
    call: Callable[[str], Awaitable[AnswerT]],
) -> AnswerT:
    """Step 2 alone: ``call`` Stripe with the key derived from the row
    (``<namespace>:<operation>:<record_id>``). For a flow whose reserve and settle are
    not transactions of their own: a detach whose row was committed detached before
    (nothing to record after), a Connect account created under its row's lock (the
    lock is what makes concurrent first calls send one request, ``payout_accounts``)."""
    keys = await outgoing_keys(source)
    return await call(keys.derive(operation, record_id))


async def call_and_settle(
    sessionmaker: async_sessionmaker[AsyncSession],
    operation: str,
    record_id: int | str,
    call: Callable[[str], Awaitable[AnswerT]],
    settle: Callable[[AsyncSession, AnswerT], Awaitable[ResultT]],
) -> ResultT:
    """Steps 2 and 3 for a row committed by the caller: ``call`` Stripe with the key
    derived from the row (``<namespace>:<operation>:<record_id>``), then ``settle`` its
    answer in a new short transaction.

    :meth:`StripeOperation.run` is built on it. A flow whose recovery is its client's
    retry (a pay-in, a card setup: the retry's Idempotency-Key finds the same row, so
    the same key reaches the same Stripe object) calls it directly, right after its
    reserve transaction, and lets Stripe's errors reach the client.
    """
    answer = await call_with_key(sessionmaker, operation, record_id, call)
    async with sessionmaker.begin() as session:
        return await settle(session, answer)


class StripeOperation(ABC, Generic[RowT, RequestT, AnswerT]):
    """Reserve, call, settle and recover one kind of Stripe write (module docstring).

    A flow subclasses it with its rules; :meth:`run` is what its route, its job and its
    sweep all call for a row.
    """

    retry_job: ClassVar[str | None] = None
    """The queue entrypoint that runs :meth:`run` for a row (payload: the row's id) after
    an unknown outcome; ``None`` when the flow's sweep is its only recovery."""
    policy: ClassVar[RetryPolicy] = RETRY_POLICY
    name: str = "stripe_operation"
    """What the logs and the retry job's dedupe key call a row (``withdrawal 12``,
    ``withdrawal:12``)."""
    sweep_limit: int = 100
    """How many due rows one :meth:`recover` runs at most."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.now = now

    # -- the flow's rules ----------------------------------------------------------------
    @abstractmethod
    async def claim(
        self, session: AsyncSession, row_id: int
    ) -> tuple[RowT, Attempt[RequestT] | None]:
        """In the claim transaction: the row (locked if the flow needs it) and the
        attempt to make, or ``None`` when there is nothing left to ask Stripe (settled
        already, or gone). Counting the attempt here keeps concurrent recoveries from
        piling on."""

    @abstractmethod
    async def call(self, request: RequestT, idempotency_key: str) -> AnswerT | Unknown:
        """Ask Stripe (no transaction open); :data:`UNKNOWN` when its outcome is not known."""

    @abstractmethod
    async def settle(self, session: AsyncSession, row_id: int, answer: AnswerT) -> RowT:
        """Record Stripe's answer in the flow's transaction (idempotent: the row may be
        settled already, by a webhook or another recovery)."""

    @abstractmethod
    async def unknown(self, session: AsyncSession, row_id: int, attempt: Attempt[RequestT]) -> RowT:
        """The outcome is unknown: the row stays pending, for :meth:`schedule_retry`'s job
        (if the row is still pending under the flow's lock) or the sweep."""

    async def due(self, session: AsyncSession, now: datetime, limit: int) -> list[int]:
        """Rows the sweep runs again: pending, and due for another try."""
        return []

    # -- the skeleton --------------------------------------------------------------------
    def reserve(self) -> AbstractAsyncContextManager[AsyncSession]:
        """Step 1: the transaction that writes the pending row; it commits when the block
        ends, before :meth:`run` lets Stripe hear of the row."""
        return self.sessionmaker.begin()

    def next_attempt_at(self, attempts: int) -> datetime:
        """When a row tried ``attempts`` times is due again (for :meth:`due`)."""
        return self.now() + self.policy.delay(attempts)

    async def schedule_retry(self, session: AsyncSession, row_id: int, attempts: int) -> None:
        """Queue :attr:`retry_job` for the row, after the policy's delay, in the
        session's transaction (one job per row at a time: the dedupe key)."""
        if self.retry_job is None:
            return
        await enqueue(
            session,
            self.retry_job,
            str(row_id).encode(),
            delay=self.policy.delay(attempts),
            dedupe_key=f"{self.name}:{row_id}",
        )

    async def run(self, row_id: int) -> RowT:
        """Steps 2 and 3 for one row: (re)ask Stripe with the row's key and record what
        happened. Safe to run any number of times, concurrently too."""
        async with self.sessionmaker.begin() as session:
            row, attempt = await self.claim(session, row_id)
        if attempt is None:
            return row

        async def settle_or_wait(session: AsyncSession, answer: AnswerT | Unknown) -> RowT:
            if answer is UNKNOWN:
                return await self.unknown(session, row_id, attempt)
            return await self.settle(session, row_id, answer)

        return await call_and_settle(
            self.sessionmaker,
            attempt.operation,
            attempt.record_id,
            lambda key: self.call(attempt.request, key),
            settle_or_wait,
        )

    async def recover(self, *, limit: int | None = None) -> int:
        """Step 4, the sweep: run every row that is due again (rows left behind by a
        process that stopped, or by Stripe being down). One row failing does not stop
        the others."""
        async with self.sessionmaker.begin() as session:
            due = await self.due(session, self.now(), limit or self.sweep_limit)
        for row_id in due:
            try:
                await self.run(row_id)
            except Exception:
                log.exception("%s %s: recovery failed", self.name, row_id)
        return len(due)
