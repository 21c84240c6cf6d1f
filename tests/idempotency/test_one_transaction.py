"""Routes marked ``@one_transaction``: the Idempotency-Key is claimed in the route's own
transaction and the response stored before its one COMMIT.

Everything commits for real, each request on its own pooled connection (the
``committed`` sessionmaker), so twins contend in PostgreSQL as in production. Every
statement the requests send is recorded at the asyncpg level to count BEGIN and COMMIT.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from asyncpg.connection import Connection
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.escrow import router as escrow_router
from payments_api.idempotency.models import IdempotencyStatus
from payments_api.kit import idempotency as kit_idempotency
from payments_api.ledger.models import LedgerTransaction
from tests.factories import create_user, fund
from tests.helpers import auth
from tests.idempotency.conftest import (
    ONE_TRANSACTION_CREDITS,
    Probe,
    available,
    fresh_id,
    stored_key,
)


def _headers(user_id: str, key: str | None, roles: list[str] | None = None) -> dict[str, str]:
    headers = auth(user_id, roles)
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    code: str = response.json()["code"]
    return code


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL text sent through ``asyncpg.Connection.execute`` (BEGIN, COMMIT,
    ROLLBACK and SAVEPOINTs go through it) while the test runs."""
    sent: list[str] = []
    original = Connection.execute

    @functools.wraps(original)
    async def recording(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query.strip().rstrip(";").upper())
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(Connection, "execute", recording)
    return sent


@contextmanager
def counting(statements: list[str]) -> Iterator[dict[str, int]]:
    """How many BEGIN, COMMIT, ROLLBACK (of the transaction) and ROLLBACK TO SAVEPOINT
    are sent inside the block."""
    counts: dict[str, int] = {}
    mark = len(statements)
    yield counts
    sent = statements[mark:]
    for kind in ("BEGIN", "COMMIT", "ROLLBACK"):
        counts[kind] = sum(1 for sql in sent if sql.split()[0] == kind and " TO " not in sql)
    counts["ROLLBACK TO"] = sum(1 for sql in sent if sql.startswith("ROLLBACK TO"))


BODY = {"amount": 700, "currency": "usd"}


class TestOneCommit:
    async def test_first_request_commits_once_and_its_retry_replays(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
        statements: list[str],
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        with counting(statements) as first_counts:
            first = await idem_client.post(
                ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
            )
        assert first.status_code == 201, first.text
        assert first_counts == {"BEGIN": 1, "COMMIT": 1, "ROLLBACK": 0, "ROLLBACK TO": 0}
        row = await stored_key(committed, user, key)
        assert row is not None
        assert row.status == IdempotencyStatus.completed.value
        assert row.response_status == 201
        assert row.response_body == first.content

        with counting(statements) as replay_counts:
            again = await idem_client.post(
                ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
            )
        assert again.status_code == 201
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert replay_counts == {"BEGIN": 1, "COMMIT": 0, "ROLLBACK": 1, "ROLLBACK TO": 0}
        assert probe.executions == 1
        assert await available(committed, user) == 700

    async def test_real_route_commits_once(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        statements: list[str],
    ) -> None:
        admin, target, key = fresh_id("admin"), fresh_id(), fresh_id("key")
        async with committed.begin() as session:
            await create_user(session, id=target)
        body = {
            "currency": "usd",
            "reason": "Goodwill credit",
            "postings": [
                {"account": {"user_id": target, "kind": "available"}, "amount": 500},
                {"account": {"kind": "adjustments"}, "amount": -500},
            ],
        }
        with counting(statements) as counts:
            response = await idem_client.post(
                "/api/v1/admin/adjustments", json=body, headers=_headers(admin, key, ["admin"])
            )
        assert response.status_code == 201, response.text
        assert counts == {"BEGIN": 1, "COMMIT": 1, "ROLLBACK": 0, "ROLLBACK TO": 0}
        row = await stored_key(committed, admin, key)
        assert row is not None
        assert row.response_body == response.content
        assert await available(committed, target) == 500


class TestOutcomes:
    async def test_problem_after_a_write_stores_the_answer_without_the_write(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
        statements: list[str],
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        probe.failures = ["409"]
        with counting(statements) as counts:
            refused = await idem_client.post(
                ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
            )
        assert refused.status_code == 409
        assert _problem_code(refused) == "probe_conflict"
        # The route's transaction rolled back whole, the answer stored in a second one.
        assert counts == {"BEGIN": 2, "COMMIT": 1, "ROLLBACK": 1, "ROLLBACK TO": 0}
        assert await available(committed, user) == 0
        async with committed() as session:
            transactions = await session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.cause_key.like(f"%{user}%"))
            )
        assert transactions == 0
        row = await stored_key(committed, user, key)
        assert row is not None
        assert row.response_status == 409

        again = await idem_client.post(
            ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
        )
        assert again.status_code == 409
        assert again.content == refused.content
        assert again.headers["idempotent-replayed"] == "true"
        assert probe.executions == 1
        assert await available(committed, user) == 0

    @pytest.mark.parametrize(("failure", "status"), [("503", 503), ("raise", 500)])
    async def test_server_error_rolls_back_write_and_key_and_the_retry_runs(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
        statements: list[str],
        failure: str,
        status: int,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        probe.failures = [failure]
        with counting(statements) as counts:
            failed = await idem_client.post(
                ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
            )
        assert failed.status_code == status
        assert counts == {"BEGIN": 1, "COMMIT": 0, "ROLLBACK": 1, "ROLLBACK TO": 0}
        assert await stored_key(committed, user, key) is None
        assert await available(committed, user) == 0

        retry = await idem_client.post(
            ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
        )
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert probe.executions == 2
        assert await available(committed, user) == 700

    async def test_validation_failure_releases_the_key(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        invalid = await idem_client.post(
            ONE_TRANSACTION_CREDITS,
            json={"amount": -1, "currency": "usd"},
            headers=_headers(user, key),
        )
        assert invalid.status_code == 422
        assert _problem_code(invalid) == "validation_error"
        assert await stored_key(committed, user, key) is None
        corrected = await idem_client.post(
            ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
        )
        assert corrected.status_code == 201, corrected.text
        assert probe.executions == 1
        assert await available(committed, user) == 700


class TestConcurrency:
    async def test_twin_while_the_first_runs_is_409_at_once_then_replays(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        gate = probe.gate = asyncio.Event()
        first = asyncio.create_task(
            idem_client.post(ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key))
        )
        await asyncio.wait_for(probe.entered.wait(), timeout=10)
        # The first is parked inside its transaction, key row inserted, not committed.
        twin = await asyncio.wait_for(
            idem_client.post(ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)),
            timeout=10,
        )
        assert twin.status_code == 409, twin.text
        assert _problem_code(twin) == "idempotency_key_in_use"
        assert twin.headers["retry-after"] == "1"
        other = await asyncio.wait_for(
            idem_client.post(
                ONE_TRANSACTION_CREDITS,
                json={"amount": 1, "currency": "usd"},
                headers=_headers(user, key),
            ),
            timeout=10,
        )
        assert other.status_code == 409, other.text
        assert _problem_code(other) == "idempotency_key_in_use"

        gate.set()
        original = await first
        assert original.status_code == 201, original.text
        replay = await idem_client.post(
            ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key)
        )
        assert replay.content == original.content
        assert replay.headers["idempotent-replayed"] == "true"
        reused = await idem_client.post(
            ONE_TRANSACTION_CREDITS,
            json={"amount": 1, "currency": "usd"},
            headers=_headers(user, key),
        )
        assert reused.status_code == 422
        assert _problem_code(reused) == "idempotency_key_reused"
        assert probe.executions == 1
        assert await available(committed, user) == 700

    async def test_ten_concurrent_twins_execute_once(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        probe: Probe,
    ) -> None:
        user, key = fresh_id(), fresh_id("key")
        responses = await asyncio.gather(
            *(
                idem_client.post(ONE_TRANSACTION_CREDITS, json=BODY, headers=_headers(user, key))
                for _ in range(10)
            )
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, [r.text for r in responses]
        executed = [
            r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
        ]
        assert len(executed) == 1
        replayed = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
        assert all(r.content == executed[0].content for r in replayed)
        assert probe.executions == 1
        assert await available(committed, user) == 700
        row = await stored_key(committed, user, key)
        assert row is not None
        assert row.response_body == executed[0].content


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent through asyncpg (each a round trip) while the test runs."""
    sent: list[str] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(Connection, name)

        def recording(original: Any) -> Any:
            @functools.wraps(original)
            async def call(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
                sent.append(query.split()[0].rstrip(";").upper())
                return await original(self, query, *args, **kwargs)

            return call

        monkeypatch.setattr(Connection, name, recording(original))
    return sent


async def _settlement_parties(committed: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    customer, payee = fresh_id("customer"), fresh_id("payee")
    async with committed.begin() as session:
        await create_user(session, id=customer)
        await create_user(session, id=payee, roles=["payee"])
        await fund(session, customer, 50_000)
    return customer, payee


class TestSettlementRoundTrips:
    async def test_each_request_of_a_settlement_sends_five_statements_and_stores_its_answer(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        round_trips: list[str],
    ) -> None:
        """BEGIN, the key's claim, the escrow's row, the ledger's posting (locks, funds
        check, postings, its event and the stored answer), COMMIT: the answer rides the
        posting.
        Measured on the second settlement of the parties (the first one creates their
        ledger accounts, and the connection learns the statements' types)."""
        customer, payee = await _settlement_parties(committed)
        for _ in range(2):
            sent, answers, keys = await self._settle(idem_client, round_trips, customer, payee)
        for step, statements in sent.items():
            assert len(statements) == 5, (step, statements)
            assert statements.count("BEGIN") == 1
            assert statements.count("COMMIT") == 1
        users = {"create": customer, "accept": payee, "complete": customer}
        for step, answer in answers.items():
            row = await stored_key(committed, users[step], keys[step])
            assert row is not None
            assert row.status == IdempotencyStatus.completed.value
            assert row.response_status == answer.status_code
            assert row.response_body == answer.content
            assert row.response_headers == [["content-type", "application/json"]]

        again = await idem_client.post(
            f"/api/v1/escrows/{answers['create'].json()['id']}/complete",
            headers=_headers(customer, keys["complete"], ["customer"]),
        )
        assert again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == answers["complete"].content

    @staticmethod
    async def _settle(
        idem_client: httpx.AsyncClient, round_trips: list[str], customer: str, payee: str
    ) -> tuple[dict[str, list[str]], dict[str, httpx.Response], dict[str, str]]:
        """One settlement: the statements of each request, its answers and keys."""
        keys = {step: fresh_id("key") for step in ("create", "accept", "complete")}
        sent: dict[str, list[str]] = {}
        mark = len(round_trips)
        created = await idem_client.post(
            "/api/v1/escrows",
            json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "job"},
            headers=_headers(customer, keys["create"], ["customer"]),
        )
        assert created.status_code == 201, created.text
        sent["create"], mark = round_trips[mark:], len(round_trips)
        escrow = created.json()["id"]
        accepted = await idem_client.post(
            f"/api/v1/escrows/{escrow}/accept", headers=_headers(payee, keys["accept"], ["payee"])
        )
        assert accepted.status_code == 200, accepted.text
        sent["accept"], mark = round_trips[mark:], len(round_trips)
        completed = await idem_client.post(
            f"/api/v1/escrows/{escrow}/complete",
            headers=_headers(customer, keys["complete"], ["customer"]),
        )
        assert completed.status_code == 200, completed.text
        sent["complete"] = round_trips[mark:]
        return sent, {"create": created, "accept": accepted, "complete": completed}, keys

    async def test_an_answer_other_than_the_one_stored_by_the_posting_is_stored_instead(
        self,
        idem_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The posting stores the answer the route announced; the route answers
        something else after all: the middleware stores what was answered."""
        customer, payee = await _settlement_parties(committed)
        original = kit_idempotency.response_riders

        def announcing_another(session: AsyncSession, status: int, model: Any) -> Any:
            return original(session, 299, model)

        monkeypatch.setattr(escrow_router, "response_riders", announcing_another)
        key = fresh_id("key")
        created = await idem_client.post(
            "/api/v1/escrows",
            json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "job"},
            headers=_headers(customer, key, ["customer"]),
        )
        assert created.status_code == 201, created.text
        row = await stored_key(committed, customer, key)
        assert row is not None
        assert row.response_status == 201
        assert row.response_body == created.content
        again = await idem_client.post(
            "/api/v1/escrows",
            json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "job"},
            headers=_headers(customer, key, ["customer"]),
        )
        assert again.status_code == 201
        assert again.content == created.content
