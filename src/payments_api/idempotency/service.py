"""Idempotency-Key rules, Stripe's semantics.

A key belongs to one user. The first request with it claims the key (``in_flight``,
under a lease), runs, and stores its response; a retry of the same request replays that
response; the same key with another request is refused (422); a retry while the first
is still running is told to wait (409). A request that failed (5xx, exception) releases
the key so that its retry runs again. A request whose process died leaves its lease to
run out, after which a retry takes the key over.

Each method runs in the caller's transaction: for a route that only touches the
database, the route's own (the claim is its first statement, the response is stored
before its commit); for the lease protocol, a short one of its own per step (see
``middleware.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider
from payments_api.idempotency.models import IdempotencyStatus
from payments_api.idempotency.repository import IdempotencyRepository, KeyRow, LeaseTerms

# How often a claim re-reads the row after losing a race (a concurrent release, prune
# or takeover between its statements) before telling the client to retry.
_CLAIM_ATTEMPTS = 3


def request_fingerprint(method: str, path: str, query_string: bytes, body: bytes) -> str:
    """SHA-256 of what makes two requests "the same": method, path, query and body.

    A JSON body is compared by meaning (keys sorted, whitespace dropped), so a client
    that re-serialises its retry differently is still recognised; any other body is
    compared byte for byte.
    """
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query_string):
        digest.update(part)
        digest.update(b"\x00")
    digest.update(_canonical_body(body))
    return digest.hexdigest()


def _canonical_body(body: bytes) -> bytes:
    if not body.strip():
        return b"empty:"
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return b"raw:" + body
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"json:" + canonical.encode()


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    user_id: str
    key: str
    fingerprint: str
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request holds the key and must execute."""

    record_id: int
    lease_token: uuid.UUID
    taken_over: bool = False
    user: dict[str, Any] | None = None
    """The caller's user row as the claim read it (column -> value), when it did."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The same request completed before: answer with its response."""

    response: StoredResponse


@dataclass(frozen=True, slots=True)
class KeyReused:
    """The key was first used for another request."""

    method: str
    path: str


@dataclass(frozen=True, slots=True)
class KeyInUse:
    """The first request is still running."""

    retry_after_seconds: int


ClaimOutcome = Claimed | Replay | KeyReused | KeyInUse


class ResponseRiding:
    """How a one-transaction route's response is stored by a statement the route sends
    anyway (``kit.idempotency.response_riders``): the key row's update rides it, one
    round trip less than an update of its own before the COMMIT. ``written`` is the
    response stored so, once that statement ran; the middleware compares it with the
    response the route answered and stores that one itself when they differ."""

    def __init__(self, claim: Claimed) -> None:
        self.claim = claim
        self.written: StoredResponse | None = None

    def rider(self, status: int, headers: list[tuple[str, str]], body: bytes) -> Rider:
        response = StoredResponse(status, headers, body)

        def written() -> None:
            self.written = response

        return IdempotencyRepository.complete_riding(
            self.claim.record_id,
            lease_token=self.claim.lease_token,
            status=status,
            headers=[[name, value] for name, value in headers],
            body=body,
            on_written=written,
        )


class IdempotencyService:
    def __init__(self, session: AsyncSession, *, lease: timedelta, retention: timedelta) -> None:
        self.repository = IdempotencyRepository(session)
        self.lease = lease
        self.retention = retention

    async def claim(self, request: IdempotentRequest) -> ClaimOutcome:
        """Claim ``request.key`` for this request, or say why not.

        Writes the in-flight row (or takes over an abandoned or expired one); the
        caller must commit before running the request, so that concurrent twins see it
        (on a session that has not begun a transaction, each statement commits itself).
        """
        lease_token = uuid.uuid4()
        terms = LeaseTerms(
            request.fingerprint,
            request.method,
            request.path,
            lease_token,
            self.lease,
            self.retention,
        )
        for _ in range(_CLAIM_ATTEMPTS):
            claimed = await self.repository.claim(
                user_id=request.user_id, key=request.key, terms=terms
            )
            if claimed.inserted_id is not None:
                return Claimed(claimed.inserted_id, lease_token, user=claimed.user)
            if not claimed.locked:
                # A twin's transaction holds the key (a route running in one transaction
                # with it): its row is not committed yet, or it is replaying this one.
                return self._while_locked(request, claimed.existing)
            # Not inserted, and the row was not visible to the insert's snapshot when a
            # twin committed it meanwhile: read it again.
            row = claimed.existing or await self.repository.get(request.user_id, request.key)
            if row is None:  # released or pruned since the insert: try again
                continue
            now = row.now
            if row.expires_at <= now:
                if await self.repository.recycle_expired(row.id, terms):
                    return Claimed(row.id, lease_token)
                continue
            if row.fingerprint != request.fingerprint:
                return KeyReused(row.request_method, row.request_path)
            if row.status == IdempotencyStatus.completed:
                return _replay(row)
            assert row.locked_until is not None  # noqa: S101 - CHECK constraint
            if row.locked_until >= now:
                wait = (row.locked_until - now).total_seconds()
                return KeyInUse(max(1, math.ceil(wait)))
            if await self.repository.take_over(row.id, lease_token=lease_token, lease=self.lease):
                return Claimed(row.id, lease_token, taken_over=True)
        return KeyInUse(1)

    @staticmethod
    def _while_locked(request: IdempotentRequest, row: KeyRow | None) -> ClaimOutcome:
        """What a claim answers while another transaction holds the key's lock: a
        committed answer if there is one, else "still running"."""
        if row is None or row.expires_at <= row.now:
            return KeyInUse(1)
        if row.fingerprint != request.fingerprint:
            return KeyReused(row.request_method, row.request_path)
        if row.status == IdempotencyStatus.completed:
            return _replay(row)
        assert row.locked_until is not None  # noqa: S101 - CHECK constraint
        wait = (row.locked_until - row.now).total_seconds()
        return KeyInUse(max(1, math.ceil(wait)))

    async def extend_lease(self, claim: Claimed) -> bool:
        """Renew the lease of a request still running; False once it lost the key."""
        return await self.repository.extend_lease(
            claim.record_id, lease_token=claim.lease_token, lease=self.lease
        )

    async def complete(self, claim: Claimed, response: StoredResponse) -> bool:
        """Store the response to replay; False if the request no longer holds the key
        (its lease ran out and a retry took over)."""
        return await self.repository.complete(
            claim.record_id,
            lease_token=claim.lease_token,
            status=response.status,
            headers=[[name, value] for name, value in response.headers],
            body=response.body,
        )

    async def release(self, claim: Claimed) -> bool:
        """Forget the key (the request failed before producing a result to keep), so
        that a retry executes again."""
        return await self.repository.release(claim.record_id, lease_token=claim.lease_token)


def _replay(row: KeyRow) -> Replay:
    assert row.response_status is not None  # noqa: S101 - CHECK constraint
    assert row.response_body is not None  # noqa: S101
    return Replay(
        StoredResponse(
            status=row.response_status,
            headers=[(name, value) for name, value in row.response_headers or []],
            body=row.response_body,
        )
    )


async def prune_expired(session: AsyncSession, *, limit: int | None = None) -> int:
    """Delete keys past their retention; returns how many. Meant for a scheduled job,
    in its own transaction; with ``limit`` it deletes one batch, so a job can loop until
    a batch comes back short without holding one long transaction."""
    return await IdempotencyRepository(session).delete_expired(limit=limit)
