"""The claim protocol, the fingerprint and pruning, on the rolled-back test transaction."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from payments_api.idempotency.models import IdempotencyKey, IdempotencyStatus
from payments_api.idempotency.repository import IdempotencyRepository
from payments_api.idempotency.service import (
    Claimed,
    IdempotencyService,
    IdempotentRequest,
    KeyInUse,
    KeyReused,
    Replay,
    StoredResponse,
    prune_expired,
    request_fingerprint,
)

LEASE = timedelta(seconds=60)
RETENTION = timedelta(hours=24)


def _request(
    user_id: str = "u-claim", key: str = "k-1", fingerprint: str = "a" * 64
) -> IdempotentRequest:
    return IdempotentRequest(
        user_id=user_id, key=key, fingerprint=fingerprint, method="POST", path="/api/v1/x"
    )


@pytest.fixture
def service(session: AsyncSession) -> IdempotencyService:
    return IdempotencyService(session, lease=LEASE, retention=RETENTION)


class TestRequestFingerprint:
    def test_json_bodies_compare_by_meaning(self) -> None:
        a = request_fingerprint("POST", "/api/v1/x", b"", b'{"a": 1, "b": [1, 2]}')
        b = request_fingerprint("post", "/api/v1/x", b"", b'{"b":[1,2],\n "a":1}')
        assert a == b

    @pytest.mark.parametrize(
        ("method", "path", "query", "body"),
        [
            ("PUT", "/api/v1/x", b"", b'{"a": 1}'),
            ("POST", "/api/v1/y", b"", b'{"a": 1}'),
            ("POST", "/api/v1/x", b"a=1", b'{"a": 1}'),
            ("POST", "/api/v1/x", b"", b'{"a": 2}'),
            ("POST", "/api/v1/x", b"", b'{"a": 1.0}'),
            ("POST", "/api/v1/x", b"", b""),
        ],
    )
    def test_any_difference_is_another_request(
        self, method: str, path: str, query: bytes, body: bytes
    ) -> None:
        reference = request_fingerprint("POST", "/api/v1/x", b"", b'{"a": 1}')
        assert request_fingerprint(method, path, query, body) != reference

    def test_non_json_bodies_compare_raw(self) -> None:
        assert request_fingerprint("POST", "/p", b"", b"a=1&b=2") == request_fingerprint(
            "POST", "/p", b"", b"a=1&b=2"
        )
        assert request_fingerprint("POST", "/p", b"", b"a=1&b=2") != request_fingerprint(
            "POST", "/p", b"", b"b=2&a=1"
        )


class TestClaim:
    async def test_lifecycle(self, service: IdempotencyService) -> None:
        claim = await service.claim(_request())
        assert isinstance(claim, Claimed)
        assert not claim.taken_over

        in_use = await service.claim(_request())
        assert isinstance(in_use, KeyInUse)
        assert 1 <= in_use.retry_after_seconds <= 60

        reused = await service.claim(_request(fingerprint="b" * 64))
        assert reused == KeyReused("POST", "/api/v1/x")

        response = StoredResponse(201, [("content-type", "application/json")], b'{"id":1}')
        assert await service.complete(claim, response)
        assert await service.claim(_request()) == Replay(response)
        assert isinstance(await service.claim(_request(user_id="u-other")), Claimed)

    async def test_release_frees_the_key(self, service: IdempotencyService) -> None:
        claim = await service.claim(_request(key="k-release"))
        assert isinstance(claim, Claimed)
        assert await service.release(claim)
        again = await service.claim(_request(key="k-release"))
        assert isinstance(again, Claimed)
        assert again.lease_token != claim.lease_token

    async def test_lost_lease_cannot_store_or_release(
        self, service: IdempotencyService, session: AsyncSession
    ) -> None:
        stale = await service.claim(_request(key="k-stale"))
        assert isinstance(stale, Claimed)
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == stale.record_id)
            .values(locked_until=func.now() - timedelta(seconds=1))
        )
        fresh = await service.claim(_request(key="k-stale"))
        assert isinstance(fresh, Claimed)
        assert fresh.taken_over
        assert fresh.record_id == stale.record_id

        late = StoredResponse(200, [], b"late")
        assert not await service.complete(stale, late)
        assert not await service.release(stale)
        assert not await service.extend_lease(stale)
        assert await service.extend_lease(fresh)
        assert await service.complete(fresh, StoredResponse(200, [], b"fresh"))
        replay = await service.claim(_request(key="k-stale"))
        assert isinstance(replay, Replay)
        assert replay.response.body == b"fresh"

    async def test_twin_holding_the_key_in_its_transaction_is_busy_without_waiting(
        self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A claim inside an open transaction (a one-transaction route) holds the key's
        advisory lock: a twin's claim neither waits on the uncommitted row nor inserts
        one, it answers "in use" at once; once the first commits its response, the
        twin's next claim replays it."""
        request = _request(user_id=f"u-twin-{uuid.uuid4().hex[:8]}", key="k-twin")
        reads = 0
        original_get = IdempotencyRepository.get

        async def counting_get(self: IdempotencyRepository, user_id: str, key: str) -> Any:
            nonlocal reads
            reads += 1
            return await original_get(self, user_id, key)

        monkeypatch.setattr(IdempotencyRepository, "get", counting_get)
        try:
            async with AsyncSession(engine) as first, AsyncSession(engine) as second:
                await first.execute(text("SELECT 1"))  # BEGIN: the claim stays uncommitted
                service = IdempotencyService(first, lease=LEASE, retention=RETENTION)
                winner = await service.claim(request)
                assert isinstance(winner, Claimed)
                busy = await asyncio.wait_for(
                    IdempotencyService(second, lease=LEASE, retention=RETENTION).claim(request),
                    timeout=10,
                )
                assert busy == KeyInUse(1)
                assert reads == 0
                assert await service.complete(winner, StoredResponse(201, [], b"first"))
                await first.commit()
                replay = await IdempotencyService(second, lease=LEASE, retention=RETENTION).claim(
                    request
                )
            assert isinstance(replay, Replay)
            assert replay.response.body == b"first"
            async with AsyncSession(engine) as check:
                rows = await check.scalar(
                    select(func.count())
                    .select_from(IdempotencyKey)
                    .where(IdempotencyKey.user_id == request.user_id)
                )
            assert rows == 1
        finally:
            async with AsyncSession(engine) as cleanup, cleanup.begin():
                await cleanup.execute(
                    delete(IdempotencyKey).where(IdempotencyKey.user_id == request.user_id)
                )


async def _row(
    session: AsyncSession, *, status: IdempotencyStatus, lease: timedelta, expires: timedelta
) -> str:
    """A row expiring at now() + ``expires`` whose lease ends at now() + ``lease``."""
    key = f"prune-{uuid.uuid4().hex[:12]}"
    completed = status is IdempotencyStatus.completed
    await session.execute(
        insert(IdempotencyKey).values(
            user_id="u-prune",
            key=key,
            fingerprint="c" * 64,
            request_method="POST",
            request_path="/api/v1/x",
            status=status.value,
            lease_token=uuid.uuid4(),
            locked_until=None if completed else func.now() + lease,
            response_status=201 if completed else None,
            response_headers=[] if completed else None,
            response_body=b"{}" if completed else None,
            created_at=func.now() + expires - timedelta(hours=24),
            expires_at=func.now() + expires,
        )
    )
    return key


class TestPruneExpired:
    async def test_removes_only_expired_rows(self, session: AsyncSession) -> None:
        await prune_expired(session)  # whatever earlier committed tests left behind
        hour = timedelta(hours=1)
        expired = [
            await _row(session, status=IdempotencyStatus.completed, lease=hour, expires=-hour),
            await _row(session, status=IdempotencyStatus.in_flight, lease=-hour, expires=-hour),
        ]
        kept = [
            await _row(session, status=IdempotencyStatus.completed, lease=hour, expires=hour),
            await _row(session, status=IdempotencyStatus.in_flight, lease=hour, expires=hour),
            # Past retention but its request still holds a lease: not pulled from under it.
            await _row(session, status=IdempotencyStatus.in_flight, lease=hour, expires=-hour),
        ]
        assert await prune_expired(session) == 2
        remaining = set(
            (
                await session.scalars(
                    select(IdempotencyKey.key).where(IdempotencyKey.user_id == "u-prune")
                )
            ).all()
        )
        assert remaining == set(kept)
        assert not remaining & set(expired)
        assert await prune_expired(session) == 0

    async def test_batches(self, session: AsyncSession) -> None:
        await prune_expired(session)
        hour = timedelta(hours=1)
        for _ in range(3):
            await _row(session, status=IdempotencyStatus.completed, lease=hour, expires=-hour)
        assert await prune_expired(session, limit=2) == 2
        assert await prune_expired(session, limit=2) == 1
        assert await prune_expired(session, limit=2) == 0
