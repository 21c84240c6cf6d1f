"""A process killed in the middle of a one-transaction route (a DB-only route with an
Idempotency-Key: an admin adjustment, an escrow's completion): the retry, served by a
fresh process, replays when the first one committed and runs when it did not; the money
moves once.

The service runs as a real ``uvicorn`` child process on the test database
(``tests/faults/crash_app.py`` kills it with SIGKILL where the request says).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.factories import create_user, fund, ledger_invariants
from tests.helpers import TEST_JWT_SECRET, auth

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """One ``uvicorn`` process of the crash app, logging to a file."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = _free_port()
        self.log_path = log
        self._log = log.open("wb")
        env = {
            **os.environ,
            "PAYMENTS_ENVIRONMENT": "test",
            "PAYMENTS_DATABASE_URL": database_url,
            "PAYMENTS_DB_POOL_SIZE": "2",
            "PAYMENTS_DB_MAX_OVERFLOW": "2",
            "PAYMENTS_JWT_SECRET": TEST_JWT_SECRET,
            # Nothing here may call Stripe: an address where nothing listens.
            "PAYMENTS_STRIPE_SECRET_KEY": "sk_test_crash",
            "PAYMENTS_STRIPE_API_BASE": f"http://127.0.0.1:{_free_port()}",
            "PAYMENTS_STRIPE_MAX_NETWORK_RETRIES": "0",
            "PAYMENTS_LOG_LEVEL": "WARNING",
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.faults.crash_app:app_factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    async def ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited: {self.log_path.read_text()[-3000:]}")
            try:
                if (await self.client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("the service did not become ready")

    async def killed(self) -> int:
        """Waits for the process to end; its return code."""
        return await asyncio.to_thread(self.process.wait, 30)

    async def stop(self) -> None:
        await self.client.aclose()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)
        self._log.close()


def _adjustment(user_id: str, amount: int) -> dict[str, Any]:
    return {
        "currency": "usd",
        "reason": "Goodwill credit",
        "postings": [
            {"account": {"user_id": user_id, "kind": "available"}, "amount": amount},
            {"account": {"kind": "adjustments"}, "amount": -amount},
        ],
    }


async def _scalar(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Any:
    async with sessions() as session:
        return await session.scalar(text(sql), params)


async def _posted(sessions: async_sessionmaker[AsyncSession], admin: str, key: str) -> int:
    count: int = await _scalar(
        sessions,
        "SELECT count(*) FROM ledger_transactions WHERE cause_key = :cause",
        cause=f"admin_adjustment:{admin}:{key}",
    )
    return count


async def test_killed_process_then_retry_posts_once(database_url: str, engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    admin = f"admin-{uuid.uuid4().hex[:8]}"
    after, before = f"u-after-{uuid.uuid4().hex[:8]}", f"u-before-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        await create_user(session, id=after)
        await create_user(session, id=before)
    keys = {"after-commit": f"key-{uuid.uuid4().hex}", "before-commit": f"key-{uuid.uuid4().hex}"}
    targets = {"after-commit": after, "before-commit": before}
    logs = Path(tempfile.mkdtemp(prefix="crash-"))

    for point in ("after-commit", "before-commit"):
        service = Service(database_url, logs / f"{point}.log")
        try:
            await service.ready()
            headers = {
                **auth(admin, ["admin"]),
                "Idempotency-Key": keys[point],
                "X-Test-Crash": point,
            }
            with pytest.raises(httpx.TransportError):
                await service.client.post(
                    "/api/v1/admin/adjustments",
                    json=_adjustment(targets[point], 500),
                    headers=headers,
                )
            assert await service.killed() == -9
        finally:
            await service.stop()

    # What each death left behind.
    stored: bytes | None = await _scalar(
        sessions,
        "SELECT response_body FROM idempotency_keys WHERE user_id = :u AND key = :k",
        u=admin,
        k=keys["after-commit"],
    )
    assert stored is not None
    assert await _posted(sessions, admin, keys["after-commit"]) == 1
    assert (
        await _scalar(
            sessions,
            "SELECT count(*) FROM idempotency_keys WHERE user_id = :u AND key = :k",
            u=admin,
            k=keys["before-commit"],
        )
        == 0
    )
    assert await _posted(sessions, admin, keys["before-commit"]) == 0

    service = Service(database_url, logs / "retry.log")
    try:
        await service.ready()
        retries = {}
        for point in ("after-commit", "before-commit"):
            retries[point] = await service.client.post(
                "/api/v1/admin/adjustments",
                json=_adjustment(targets[point], 500),
                headers={**auth(admin, ["admin"]), "Idempotency-Key": keys[point]},
            )
    finally:
        await service.stop()

    replayed = retries["after-commit"]
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.content == stored
    ran = retries["before-commit"]
    assert ran.status_code == 201, ran.text
    assert "idempotent-replayed" not in ran.headers
    for point in ("after-commit", "before-commit"):
        assert await _posted(sessions, admin, keys[point]) == 1
        balance = await _scalar(
            sessions,
            "SELECT COALESCE(sum(p.amount), 0) FROM ledger_postings p "
            "JOIN ledger_accounts a ON a.id = p.account_id "
            "WHERE a.owner_user_id = :u AND a.kind = 'available'",
            u=targets[point],
        )
        assert balance == 500


async def test_killed_escrow_completion_then_retry_settles_once(
    database_url: str, engine: AsyncEngine
) -> None:
    """POST /escrows/{id}/complete (the settlement: postings, earning, event, stored
    response in one transaction) killed after its commit, or before it."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    customer, payee = f"c-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        await create_user(session, id=customer)
        await create_user(session, id=payee, roles=["payee"])
        await fund(session, customer, 100_000)
    logs = Path(tempfile.mkdtemp(prefix="crash-escrow-"))
    points = ("after-commit", "before-commit")
    keys = {point: f"key-{uuid.uuid4().hex}" for point in points}
    escrows: dict[str, str] = {}

    for point in points:
        service = Service(database_url, logs / f"{point}.log")
        try:
            await service.ready()
            created = await service.client.post(
                "/api/v1/escrows",
                json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "job"},
                headers={**auth(customer, ["customer"]), "Idempotency-Key": uuid.uuid4().hex},
            )
            assert created.status_code == 201, created.text
            escrows[point] = created.json()["id"]
            accepted = await service.client.post(
                f"/api/v1/escrows/{escrows[point]}/accept",
                headers={**auth(payee, ["payee"]), "Idempotency-Key": uuid.uuid4().hex},
            )
            assert accepted.status_code == 200, accepted.text
            with pytest.raises(httpx.TransportError):
                await service.client.post(
                    f"/api/v1/escrows/{escrows[point]}/complete",
                    headers={
                        **auth(customer, ["customer"]),
                        "Idempotency-Key": keys[point],
                        "X-Test-Crash": point,
                    },
                )
            assert await service.killed() == -9
        finally:
            await service.stop()

    async def settlements(point: str) -> int:
        escrow_id = int(escrows[point].removeprefix("esc_"))
        count: int = await _scalar(
            sessions,
            "SELECT count(*) FROM ledger_transactions WHERE cause_key = :cause",
            cause=f"escrow:{escrow_id}:complete",
        )
        return count

    async def stored_response(point: str) -> bytes | None:
        body: bytes | None = await _scalar(
            sessions,
            "SELECT response_body FROM idempotency_keys WHERE user_id = :u AND key = :k",
            u=customer,
            k=keys[point],
        )
        return body

    stored = await stored_response("after-commit")
    assert stored is not None
    assert await settlements("after-commit") == 1
    assert await stored_response("before-commit") is None
    assert await settlements("before-commit") == 0

    service = Service(database_url, logs / "retry.log")
    try:
        await service.ready()
        retries = {
            point: await service.client.post(
                f"/api/v1/escrows/{escrows[point]}/complete",
                headers={**auth(customer, ["customer"]), "Idempotency-Key": keys[point]},
            )
            for point in points
        }
    finally:
        await service.stop()

    replayed = retries["after-commit"]
    assert replayed.status_code == 200, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.content == stored
    ran = retries["before-commit"]
    assert ran.status_code == 200, ran.text
    assert "idempotent-replayed" not in ran.headers
    assert ran.json()["status"] == "completed"
    for point in points:
        assert await settlements(point) == 1
    earnings = await _scalar(sessions, "SELECT count(*) FROM earnings WHERE payee_id = :u", u=payee)
    assert earnings == 2
    payee_available = await _scalar(
        sessions,
        "SELECT COALESCE(sum(p.amount), 0) FROM ledger_postings p "
        "JOIN ledger_accounts a ON a.id = p.account_id "
        "WHERE a.owner_user_id = :u AND a.kind = 'available'",
        u=payee,
    )
    payee_takes = await _scalar(
        sessions, "SELECT sum(payee_amount) FROM escrows WHERE payee_id = :u", u=payee
    )
    assert payee_takes > 0
    assert payee_available == payee_takes
    async with sessions() as session:
        assert await ledger_invariants(session) == []
