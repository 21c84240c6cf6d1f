"""Several replicas at once: two uvicorn processes on one database.

Production runs N stateless replicas behind a load balancer (SPEC 2). Here two real OS
processes (``uvicorn --factory payments_api.main:app_factory``), each with its own
engine and pool, serve the test database; Stripe is the sandbox, served by a third
process of the app in sandbox mode (no key) on the same database, which the replicas
reach over HTTP (``PAYMENTS_STRIPE_API_BASE``), as they would reach Stripe. Requests
that must take effect once are split across both at the same time:

- the same Idempotency-Key on a top-up -> one order, one PaymentIntent, one answer;
- the same Stripe event delivered to both, several times -> credited once;
- concurrent withdrawals of one wallet -> exactly what the balance covers is
  transferred, one Transfer per withdrawal, nothing overdrawn.

Everything commits for real (fresh users), as in the other concurrency tests.
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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.factories import create_user, fund, ledger_invariants
from tests.helpers import TEST_JWT_SECRET, auth, make_event, signed_webhook, stripe_object

REPLICAS = 2
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Replica:
    """One ``uvicorn`` process of the app, logging to a file (shown if it dies)."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "payments_api.main:app_factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def exited(self) -> str | None:
        if self.process.poll() is None:
            return None
        return f"exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
async def stripe_server(database_url: str, engine: AsyncEngine) -> AsyncIterator[str]:
    """The sandbox: the app without a Stripe key, on the test database. It delivers the
    events it emits to its own webhook routes (so an onboarding it is told about reaches
    the database the replicas share). Yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = Path(tempfile.mkdtemp(prefix="replicas-sandbox-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAYMENTS_")},
        "PAYMENTS_ENVIRONMENT": "test",
        "PAYMENTS_DATABASE_URL": database_url,
        "PAYMENTS_DB_POOL_SIZE": "3",
        "PAYMENTS_JWT_SECRET": TEST_JWT_SECRET,
        "PAYMENTS_PUBLIC_BASE_URL": base,
        "PAYMENTS_DATA_DIR": str(data),
        "PAYMENTS_LOG_LEVEL": "WARNING",
    }
    sandbox = Replica(env, data / "sandbox.log", port=port)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_ready(client, sandbox)
        yield base
    finally:
        sandbox.stop()
        # The sandbox process committed its Stripe objects, keys and events to the test
        # database; the sandbox tests that run later in this process expect an empty
        # sandbox (their own rows roll back), and a pending event left here would be
        # delivered by their app's sandbox consumer; so would the delivery jobs it queued
        # on pgqueuer (and its housekeeping schedule), which those tests also count.
        async with engine.begin() as connection:
            await connection.execute(
                text("TRUNCATE sandbox_events, sandbox_idempotency_keys, sandbox_objects")
            )
            await connection.execute(text("DELETE FROM pgqueuer WHERE entrypoint LIKE 'sandbox.%'"))
            await connection.execute(
                text("DELETE FROM pgqueuer_schedules WHERE entrypoint LIKE 'sandbox.%'")
            )


async def sandbox_count(
    sessions: async_sessionmaker[AsyncSession], type_: str, field: str, value: str
) -> int:
    """How many objects of ``type_`` the sandbox (Stripe) holds with ``field`` = value
    (a top-level field, or ``metadata.<key>``)."""
    path = field.split(".")
    return int(
        await scalar(
            sessions,
            "SELECT count(*) FROM sandbox_objects WHERE type = :t AND body #>> :p = :v",
            t=type_,
            p=path,
            v=value,
        )
    )


@pytest.fixture(scope="module")
async def replicas(database_url: str, stripe_server: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two app processes on the test database, started in parallel."""
    stripe_base = f"{stripe_server}/sandbox/stripe"
    env = {
        **os.environ,
        "PAYMENTS_ENVIRONMENT": "test",
        "PAYMENTS_DATABASE_URL": database_url,
        "PAYMENTS_DB_POOL_SIZE": "5",
        "PAYMENTS_DB_MAX_OVERFLOW": "5",
        "PAYMENTS_JWT_SECRET": TEST_JWT_SECRET,
        "PAYMENTS_STRIPE_SECRET_KEY": "sk_test_replicas",
        "PAYMENTS_STRIPE_API_BASE": stripe_base,
        "PAYMENTS_STRIPE_MAX_NETWORK_RETRIES": "0",
        "PAYMENTS_STRIPE_WEBHOOK_SECRETS": TEST_WEBHOOK_SECRET,
        "PAYMENTS_STRIPE_CONNECT_WEBHOOK_SECRETS": TEST_CONNECT_WEBHOOK_SECRET,
        "PAYMENTS_LOG_LEVEL": "WARNING",
    }
    logs = Path(tempfile.mkdtemp(prefix="replicas-"))
    started: list[Replica] = []
    clients: list[httpx.AsyncClient] = []
    try:
        for index in range(REPLICAS):
            replica = Replica(env, logs / f"replica-{index}.log")
            started.append(replica)
            clients.append(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{replica.port}", timeout=30)
            )
        await asyncio.gather(*(wait_ready(c, r) for c, r in zip(clients, started, strict=True)))
        yield clients
    finally:
        for client in clients:
            await client.aclose()
        for replica in started:
            replica.stop()


async def wait_ready(client: httpx.AsyncClient, replica: Replica) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        exited = replica.exited()
        if exited is not None:
            raise AssertionError(f"a replica {exited}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("a replica did not become ready")


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def scalar(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Any:
    async with sessions() as session:
        return await session.scalar(text(sql), params)


async def balance(client: httpx.AsyncClient, user: str, currency: str) -> dict[str, int]:
    response = await client.get("/api/v1/me/balance", headers=auth(user))
    for entry in response.json()["balances"]:
        if entry["currency"] == currency:
            found: dict[str, int] = entry
            return found
    return {"available": 0, "escrow": 0, "withdrawing": 0, "pending": 0}


async def until_done(client: httpx.AsyncClient, **request: Any) -> httpx.Response:
    """Send; while the key is held by the twin on the other replica (409), retry as a
    client would after ``Retry-After``."""
    for _ in range(100):
        response = await client.request(**request)
        if response.status_code != 409:
            return response
        assert response.json()["code"] == "idempotency_key_in_use"
        assert "Retry-After" in response.headers
        await asyncio.sleep(0.05)
    raise AssertionError("the idempotency key stayed in use")


async def onboard(replica: httpx.AsyncClient, sandbox_base: str, user: str) -> str:
    """The payee finishes Express onboarding on the sandbox's page; the account.updated
    the sandbox then delivers (to its own webhook route, same database) enables it."""
    link = await replica.post(
        "/api/v1/me/payout-account/onboarding-link", headers=auth(user, ["payee"])
    )
    assert link.status_code == 200, link.text
    url = httpx.URL(link.json()["url"])
    account = url.path.rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=sandbox_base, timeout=30) as browser:
        done = await browser.post(url.path, data={"link": url.params["link"], "outcome": "enabled"})
    assert done.status_code == 303, done.text
    for _ in range(200):
        status = await replica.get("/api/v1/me/payout-account", headers=auth(user, ["payee"]))
        if status.json()["payout_account"]["status"] == "enabled":
            return account
        await asyncio.sleep(0.05)
    raise AssertionError(f"the payout account never became enabled: {status.text}")


async def fund_stripe_platform(sandbox_base: str, amount: int) -> None:
    """Money on the platform's Stripe balance for transfers: a card payment straight at
    the sandbox (Stripe refuses transfers the balance does not cover, as it does)."""
    async with httpx.AsyncClient(base_url=sandbox_base, timeout=30) as stripe:
        paid = await stripe.post(
            "/sandbox/stripe/v1/payment_intents",
            data={
                "amount": str(amount),
                "currency": "usd",
                "confirm": "true",
                "payment_method": "pm_card_visa",
            },
            headers={"Authorization": "Bearer sk_test_replicas"},
        )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"


class TestReplicas:
    async def test_same_idempotency_key_on_both_replicas(
        self,
        replicas: list[httpx.AsyncClient],
        committed: async_sessionmaker[AsyncSession],
    ) -> None:
        user, key = f"rep_{uuid.uuid4().hex[:10]}", f"k-{uuid.uuid4().hex}"
        request = {
            "method": "POST",
            "url": "/api/v1/topups",
            "json": {"amount": 4_200, "currency": "eur"},
            "headers": {**auth(user), "Idempotency-Key": key},
        }
        responses = await asyncio.gather(
            *(until_done(replicas[i % REPLICAS], **request) for i in range(8))
        )
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        assert len({r.json()["payment_intent_id"] for r in responses}) == 1
        assert len({r.json()["order_id"] for r in responses}) == 1
        assert (
            await scalar(committed, "SELECT count(*) FROM orders WHERE user_id = :u", u=user) == 1
        )
        order = responses[0].json()["order_id"].removeprefix("ord_")
        # One PaymentIntent and one customer at Stripe.
        assert await sandbox_count(committed, "payment_intent", "metadata.order_id", order) == 1
        assert await sandbox_count(committed, "customer", "metadata.user_id", user) == 1

    async def test_one_event_delivered_to_both_replicas_applies_once(
        self,
        replicas: list[httpx.AsyncClient],
        committed: async_sessionmaker[AsyncSession],
    ) -> None:
        user = f"rep_{uuid.uuid4().hex[:10]}"
        created = await replicas[0].post(
            "/api/v1/topups",
            json={"amount": 7_700, "currency": "eur"},
            headers={**auth(user), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert created.status_code == 201, created.text
        intent = stripe_object("payment_intent")
        intent.update(
            id=created.json()["payment_intent_id"],
            amount=7_700,
            amount_received=7_700,
            currency="eur",
            status="succeeded",
            latest_charge=None,
            last_payment_error=None,
            metadata={
                "order_id": created.json()["order_id"].removeprefix("ord_"),
                "user_id": user,
                "purpose": "topup",
            },
        )
        event = make_event("payment_intent.succeeded", intent)
        body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
        deliveries = await asyncio.gather(
            *(
                replicas[i % REPLICAS].post(
                    "/api/v1/webhooks/stripe", content=body, headers=headers
                )
                for i in range(10)
            )
        )
        assert {d.status_code for d in deliveries} == {200}, [d.text for d in deliveries]
        outcomes = [d.json()["status"] for d in deliveries]
        assert outcomes.count("processed") == 1, outcomes
        assert set(outcomes) <= {"processed", "duplicate", "in_progress"}
        assert (await balance(replicas[1], user, "eur"))["available"] == 7_700
        credits = await scalar(
            committed,
            "SELECT count(*) FROM ledger_transactions WHERE cause_key = :k",
            k=f"stripe:payment:{intent['id']}",
        )
        assert credits == 1

    async def test_concurrent_withdrawals_split_across_replicas(
        self,
        replicas: list[httpx.AsyncClient],
        stripe_server: str,
        committed: async_sessionmaker[AsyncSession],
    ) -> None:
        user = f"rep_{uuid.uuid4().hex[:10]}"
        async with committed.begin() as session:
            await create_user(session, id=user, roles=["payee"])
            await fund(session, user, 10_000, "usd")
        account = await onboard(replicas[0], stripe_server, user)
        await fund_stripe_platform(stripe_server, 20_000)

        async def withdraw(i: int) -> httpx.Response:
            return await replicas[i % REPLICAS].post(
                "/api/v1/me/payouts",
                json={"amount": 2_000, "currency": "usd"},
                headers={**auth(user, ["payee"]), "Idempotency-Key": f"wd-{user}-{i}"},
            )

        responses = await asyncio.gather(*(withdraw(i) for i in range(10)))
        succeeded = [r for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code != 201]
        assert len(succeeded) == 5, [r.text for r in responses]
        assert {r.json()["status"] for r in succeeded} == {"transferred"}
        assert {r.status_code for r in refused} == {402}, [r.text for r in refused]
        assert {r.json()["code"] for r in refused} == {"insufficient_funds"}
        after = await balance(replicas[1], user, "usd")
        assert (after["available"], after["withdrawing"]) == (0, 0)
        # One Transfer per withdrawal at Stripe (a replayed key would have made none).
        assert await sandbox_count(committed, "transfer", "destination", account) == 5


@pytest.fixture(autouse=True)
async def _ledger_invariants_hold_after_each_test(
    committed: async_sessionmaker[AsyncSession],
) -> AsyncIterator[None]:
    """Checked after every test of this module, whatever order they run in (a separate
    last test only checked something when the others happened to run first)."""
    yield
    async with committed() as session:
        assert await ledger_invariants(session) == []
