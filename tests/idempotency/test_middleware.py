"""Idempotency-Key replay through the HTTP API, on a database that really commits.

Every test uses fresh user ids and keys: the rows outlive the test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.audit.models import AuditLogEntry
from payments_api.idempotency.models import IdempotencyKey, IdempotencyStatus
from payments_api.idempotency.service import request_fingerprint
from payments_api.ledger.models import LedgerTransaction
from tests.factories import create_user
from tests.helpers import auth
from tests.idempotency.conftest import PROBE, Probe, available, fresh_id, stored_key

CREDITS = f"{PROBE}/credits"
ECHO = f"{PROBE}/echo"


def _headers(user_id: str, key: str | None, roles: list[str] | None = None) -> dict[str, str]:
    headers = auth(user_id, roles)
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith(f"/{code}")
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def _insert_key(
    sessions: async_sessionmaker[AsyncSession],
    *,
    user_id: str,
    key: str,
    fingerprint: str,
    status: IdempotencyStatus,
    locked_until: timedelta | None = None,
    created: timedelta = timedelta(0),
    expires: timedelta = timedelta(hours=24),
) -> None:
    """A row as another (possibly crashed) process left it; times relative to now()."""
    completed = status is IdempotencyStatus.completed
    async with sessions.begin() as session:
        await session.execute(
            insert(IdempotencyKey).values(
                user_id=user_id,
                key=key,
                fingerprint=fingerprint,
                request_method="POST",
                request_path=CREDITS,
                status=status.value,
                lease_token=uuid.uuid4(),
                locked_until=None if locked_until is None else func.now() + locked_until,
                response_status=200 if completed else None,
                response_headers=[["content-type", "application/json"]] if completed else None,
                response_body=b'{"old":true}' if completed else None,
                created_at=func.now() + created,
                expires_at=func.now() + expires,
            )
        )


def _credit_fingerprint(body: dict[str, Any]) -> str:
    return request_fingerprint("POST", CREDITS, b"", json.dumps(body).encode())


class TestReplay:
    async def test_same_post_twice_executes_once_and_replays_byte_for_byte(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        first = await idem_client.post(
            CREDITS, json={"amount": 500, "currency": "usd"}, headers=_headers(user, key)
        )
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        assert "probe_session" in first.headers["set-cookie"]
        # Same request, keys reordered and differently spaced: still the same request.
        second = await idem_client.post(
            CREDITS,
            content=b'{ "currency": "usd",  "amount": 500 }',
            headers={**_headers(user, key), "Content-Type": "application/json"},
        )
        assert second.status_code == 201
        assert second.content == first.content
        assert second.headers["idempotent-replayed"] == "true"
        assert second.headers["content-type"] == first.headers["content-type"]
        assert second.headers["location"] == first.headers["location"]
        assert second.headers["content-length"] == str(len(first.content))
        assert "set-cookie" not in second.headers
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        assert probe.executions == 1
        assert await available(committed, user) == 500
        row = await stored_key(committed, user, key)
        assert row is not None
        assert row.status == IdempotencyStatus.completed
        assert row.response_body == first.content
        assert row.locked_until is None

    async def test_delete_without_content_is_replayed(
        self, idem_client: httpx.AsyncClient, probe: Probe
    ) -> None:
        headers = _headers(fresh_id(), fresh_id("key"))
        first = await idem_client.delete(f"{CREDITS}/c1", headers=headers)
        second = await idem_client.delete(f"{CREDITS}/c1", headers=headers)
        assert first.status_code == second.status_code == 204
        assert second.content == b""
        assert second.headers["idempotent-replayed"] == "true"
        assert "content-length" not in second.headers
        assert probe.executions == 1

    async def test_same_key_different_body_is_422_and_writes_nothing(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        first = await idem_client.post(
            CREDITS, json={"amount": 500, "currency": "usd"}, headers=_headers(user, key)
        )
        assert first.status_code == 201
        other_body = await idem_client.post(
            CREDITS, json={"amount": 900, "currency": "usd"}, headers=_headers(user, key)
        )
        problem = _assert_problem(other_body, 422, "idempotency_key_reused")
        assert CREDITS in problem["detail"]
        other_route = await idem_client.post(
            ECHO, json={"amount": 500, "currency": "usd"}, headers=_headers(user, key)
        )
        _assert_problem(other_route, 422, "idempotency_key_reused")
        other_query = await idem_client.post(
            f"{CREDITS}?expand=all",
            json={"amount": 500, "currency": "usd"},
            headers=_headers(user, key),
        )
        _assert_problem(other_query, 422, "idempotency_key_reused")
        assert probe.executions == 1
        assert await available(committed, user) == 500

    async def test_keys_are_scoped_per_user(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        alice, bob, key = fresh_id(), fresh_id(), fresh_id("key")
        body = {"amount": 300, "currency": "usd"}
        for_alice = await idem_client.post(CREDITS, json=body, headers=_headers(alice, key))
        for_bob = await idem_client.post(CREDITS, json=body, headers=_headers(bob, key))
        assert for_alice.status_code == for_bob.status_code == 201
        assert "idempotent-replayed" not in for_bob.headers
        assert for_alice.json()["nonce"] != for_bob.json()["nonce"]
        assert probe.executions == 2
        assert await available(committed, alice) == 300
        assert await available(committed, bob) == 300

    async def test_key_past_retention_is_free_again(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        await _insert_key(
            committed,
            user_id=user,
            key=key,
            fingerprint="f" * 64,  # another request, long ago
            status=IdempotencyStatus.completed,
            created=-timedelta(hours=30),
            expires=-timedelta(hours=6),
        )
        response = await idem_client.post(
            CREDITS, json={"amount": 100, "currency": "usd"}, headers=_headers(user, key)
        )
        assert response.status_code == 201, response.text
        assert probe.executions == 1
        row = await stored_key(committed, user, key)
        assert row is not None
        assert row.response_body == response.content
        assert row.expires_at - row.created_at == timedelta(hours=24)


class TestConcurrency:
    async def test_two_concurrent_requests_one_2xx_one_409(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        body = {"amount": 700, "currency": "usd"}
        gate = probe.gate = asyncio.Event()

        async def post() -> httpx.Response:
            response = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
            # The loser answers while the winner is parked in the route; let it finish.
            if response.status_code == 409:
                gate.set()
            return response

        responses = await asyncio.gather(post(), post())
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        conflict = next(r for r in responses if r.status_code == 409)
        _assert_problem(conflict, 409, "idempotency_key_in_use")
        assert 1 <= int(conflict.headers["retry-after"]) <= 60
        assert probe.executions == 1
        assert await available(committed, user) == 700

        winner = next(r for r in responses if r.status_code == 201)
        later = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
        assert later.content == winner.content
        assert later.headers["idempotent-replayed"] == "true"

    async def test_ten_concurrent_twins_execute_once(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        body = {"amount": 250, "currency": "usd"}
        responses = await asyncio.gather(
            *(idem_client.post(CREDITS, json=body, headers=_headers(user, key)) for _ in range(10))
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, [r.text for r in responses]
        assert probe.executions == 1
        assert await available(committed, user) == 250
        originals = [r for r in responses if r.status_code == 201]
        assert len({r.content for r in originals}) == 1

    async def test_slow_request_keeps_its_key_past_the_lease(
        self,
        committed_app: Callable[..., FastAPI],
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        app = committed_app(idempotency_lease_seconds=1)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        user, key = fresh_id(), fresh_id("key")
        body = {"amount": 400, "currency": "usd"}
        probe.gate = asyncio.Event()
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            slow = asyncio.create_task(client.post(CREDITS, json=body, headers=_headers(user, key)))
            await asyncio.wait_for(probe.entered.wait(), timeout=5)
            # Wait until the database's clock is past the lease the request claimed
            # with, and the heartbeat has renewed it since: only that keeps the key.
            await asyncio.wait_for(_lease_outlived(committed, user, key), timeout=10)
            retry = await client.post(CREDITS, json=body, headers=_headers(user, key))
            _assert_problem(retry, 409, "idempotency_key_in_use")
            probe.gate.set()
            first = await slow
        assert first.status_code == 201
        assert probe.executions == 1
        assert await available(committed, user) == 400


async def _lease_outlived(sessions: async_sessionmaker[AsyncSession], user: str, key: str) -> None:
    """Returns once the first lease of ``(user, key)`` has run out by the database's
    clock and the key is still in flight under a renewed lease."""
    first_lease = None
    while True:
        async with sessions() as session:
            row = (
                await session.execute(
                    select(IdempotencyKey.locked_until, func.now()).where(
                        IdempotencyKey.user_id == user, IdempotencyKey.key == key
                    )
                )
            ).one()
        locked_until, now = row
        assert locked_until is not None, "the key was released"
        first_lease = first_lease or locked_until
        if now > first_lease and locked_until > now:
            return
        await asyncio.sleep(0.05)


class TestRecovery:
    async def test_expired_lease_of_a_crashed_request_is_taken_over(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        body = {"amount": 600, "currency": "usd"}
        await _insert_key(
            committed,
            user_id=user,
            key=key,
            fingerprint=_credit_fingerprint(body),
            status=IdempotencyStatus.in_flight,
            locked_until=-timedelta(seconds=5),
        )
        response = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
        assert response.status_code == 201, response.text
        assert "idempotent-replayed" not in response.headers
        assert probe.executions == 1
        row = await stored_key(committed, user, key)
        assert row is not None
        assert row.status == IdempotencyStatus.completed
        replay = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
        assert replay.content == response.content

    async def test_live_lease_is_respected(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        body = {"amount": 600, "currency": "usd"}
        await _insert_key(
            committed,
            user_id=user,
            key=key,
            fingerprint=_credit_fingerprint(body),
            status=IdempotencyStatus.in_flight,
            locked_until=timedelta(seconds=45),
        )
        response = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
        _assert_problem(response, 409, "idempotency_key_in_use")
        assert 40 <= int(response.headers["retry-after"]) <= 45
        assert probe.executions == 0

    @pytest.mark.parametrize(("failure", "status"), [("raise", 500), ("503", 503)])
    async def test_server_error_releases_the_key_and_the_retry_executes(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
        failure: str,
        status: int,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        body = {"amount": 800, "currency": "usd"}
        probe.failures = [failure]
        failed = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
        assert failed.status_code == status, failed.text
        assert await stored_key(committed, user, key) is None
        assert await available(committed, user) == 0  # the route's transaction rolled back

        retry = await idem_client.post(CREDITS, json=body, headers=_headers(user, key))
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert probe.executions == 2
        assert await available(committed, user) == 800

    async def test_validation_failure_is_not_stored(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        invalid = await idem_client.post(
            CREDITS, json={"amount": 10.5, "currency": "usd"}, headers=_headers(user, key)
        )
        _assert_problem(invalid, 422, "validation_error")
        malformed = await idem_client.post(
            CREDITS,
            content=b'{"amount": ',
            headers={**_headers(user, key), "Content-Type": "application/json"},
        )
        _assert_problem(malformed, 400, "malformed_json")
        assert await stored_key(committed, user, key) is None
        fixed = await idem_client.post(
            CREDITS, json={"amount": 1050, "currency": "usd"}, headers=_headers(user, key)
        )
        assert fixed.status_code == 201, fixed.text
        assert probe.executions == 1


class TestPassThrough:
    async def test_without_key_every_request_executes(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user = fresh_id()
        for _ in range(2):
            response = await idem_client.post(
                CREDITS, json={"amount": 100, "currency": "usd"}, headers=_headers(user, None)
            )
            assert response.status_code == 201
        assert probe.executions == 2
        assert await available(committed, user) == 200

    async def test_without_valid_token_the_route_answers_401(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        key = fresh_id("key")
        body = {"amount": 100, "currency": "usd"}
        missing = await idem_client.post(CREDITS, json=body, headers={"Idempotency-Key": key})
        _assert_problem(missing, 401, "unauthorized")
        bad = await idem_client.post(
            CREDITS, json=body, headers={"Idempotency-Key": key, "Authorization": "Bearer x.y.z"}
        )
        _assert_problem(bad, 401, "invalid_token")
        async with committed() as session:
            rows = await session.scalar(
                select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)
            )
        assert rows == 0
        assert probe.executions == 0

    async def test_reads_and_webhooks_are_not_intercepted(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        headers = _headers(user, key)
        reads = [await idem_client.get(ECHO, headers=headers) for _ in range(2)]
        assert reads[0].json()["nonce"] != reads[1].json()["nonce"]
        hooks = [
            await idem_client.post("/api/v1/webhooks/test-idempotency", json={}, headers=headers)
            for _ in range(2)
        ]
        assert hooks[0].json()["nonce"] != hooks[1].json()["nonce"]
        assert probe.executions == 4
        assert await stored_key(committed, user, key) is None

    async def test_key_longer_than_255_is_422(
        self, idem_client: httpx.AsyncClient, probe: Probe
    ) -> None:
        response = await idem_client.post(
            ECHO, json={"a": 1}, headers=_headers(fresh_id(), "k" * 256)
        )
        body = _assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert probe.executions == 0
        longest = await idem_client.post(
            ECHO, json={"a": 1}, headers=_headers(fresh_id(), "k" * 255)
        )
        assert longest.status_code == 200

    @pytest.mark.parametrize("key", [b"", b"  ", b"two words", "ключ".encode(), b"tab\tkey"])
    async def test_key_outside_its_schema_is_422(
        self, idem_client: httpx.AsyncClient, probe: Probe, key: bytes
    ) -> None:
        """Found by schemathesis (scripts/schemathesis_ci.sh): an empty key passed as
        none on the routes where the key is optional, though the spec declares 1 to 255
        printable ASCII characters."""
        response = await idem_client.post(
            ECHO,
            json={"a": 1},
            headers={
                **{name.encode(): value.encode() for name, value in auth(fresh_id()).items()},
                b"Idempotency-Key": key,
            },
        )
        body = _assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert probe.executions == 0

    async def test_undeclared_method_or_path_is_the_routers_answer_whatever_the_key(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        """Found by schemathesis: a PUT to a POST route with a key used before was 422
        ``idempotency_key_reused`` (the key was claimed before routing), not 405."""
        user, key = fresh_id(), fresh_id("key")
        first = await idem_client.post(ECHO, json={"a": 1}, headers=_headers(user, key))
        assert first.status_code == 200
        put = await idem_client.put(ECHO, json={"a": 1}, headers=_headers(user, key))
        assert put.status_code == 405, put.text
        missing = await idem_client.post(
            f"{PROBE}/no-such-route", json={"a": 1}, headers=_headers(user, key)
        )
        assert missing.status_code == 404, missing.text
        fresh = fresh_id("key")
        await idem_client.put(ECHO, json={"a": 1}, headers=_headers(user, fresh))
        assert await stored_key(committed, user, fresh) is None  # nothing claimed
        assert probe.executions == 1


def _adjustment(user_id: str, amount: int) -> dict[str, Any]:
    return {
        "currency": "usd",
        "reason": "Goodwill credit",
        "postings": [
            {"account": {"user_id": user_id, "kind": "available"}, "amount": amount},
            {"account": {"kind": "adjustments"}, "amount": -amount},
        ],
    }


class TestAdminAdjustments:
    """The real money-moving route, behind the middleware."""

    async def test_same_adjustment_twice_posts_once_and_replays(
        self, idem_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        admin, target, key = fresh_id("admin"), fresh_id(), fresh_id("key")
        async with committed.begin() as session:
            await create_user(session, id=target)
        headers = _headers(admin, key, ["admin"])
        first = await idem_client.post(
            "/api/v1/admin/adjustments", json=_adjustment(target, 500), headers=headers
        )
        assert first.status_code == 201, first.text
        second = await idem_client.post(
            "/api/v1/admin/adjustments", json=_adjustment(target, 500), headers=headers
        )
        assert second.status_code == 201
        assert second.content == first.content
        assert second.headers["idempotent-replayed"] == "true"
        row = await stored_key(committed, admin, key)
        assert row is not None
        assert row.response_body == first.content  # answered by the middleware
        async with committed() as session:
            transactions = await session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.cause_key == f"admin_adjustment:{admin}:{key}")
            )
            audits = await session.scalar(
                select(func.count())
                .select_from(AuditLogEntry)
                .where(AuditLogEntry.target_id == first.json()["id"])
            )
        assert (transactions, audits) == (1, 1)
        assert await available(committed, target) == 500

        reused = await idem_client.post(
            "/api/v1/admin/adjustments", json=_adjustment(target, 600), headers=headers
        )
        _assert_problem(reused, 422, "idempotency_key_reused")
        assert await available(committed, target) == 500

    async def test_missing_key_is_400(
        self, idem_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        target = fresh_id()
        response = await idem_client.post(
            "/api/v1/admin/adjustments",
            json=_adjustment(target, 500),
            headers=_headers(fresh_id("admin"), None, ["admin"]),
        )
        _assert_problem(response, 400, "idempotency_key_required")
        blank = await idem_client.post(
            "/api/v1/admin/adjustments",
            json=_adjustment(target, 500),
            headers=_headers(fresh_id("admin"), "  ", ["admin"]),
        )
        # A blank key is outside the header's schema (minLength 1, printable ASCII).
        _assert_problem(blank, 422, "validation_error")
