"""The sandbox's webhooks: signed as Stripe signs, verified by the same code as real
ones, sent only after the change commits, retried with backoff, never lost."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import respx
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.kit.clock import utcnow
from payments_api.sandbox_secret import sandbox_webhook_secret
from payments_api.settings import Settings, webhook_secrets
from payments_api.stripe.gateway import InvalidWebhookSignature, verify_webhook_signature
from payments_api.webhooks.models import WebhookEvent
from payments_sandbox.events import (
    HOUSEKEEPING_SCHEDULE,
    MAX_ATTEMPTS,
    housekeeping,
    retry_delay,
    sign,
)
from payments_sandbox.models import SandboxEvent, SandboxObject
from payments_sandbox.params import Params
from payments_sandbox.repository import DELIVER_JOB
from payments_sandbox.service import SandboxStripe
from payments_sandbox.worker import SandboxWorker
from tests.helpers import stripe_object, stripe_signature
from tests.sandbox.helpers import Sandbox, database_now, run_delivery_jobs


async def event_row(sandbox: Sandbox, event_type: str) -> SandboxEvent:
    async with sandbox.sessionmaker() as session:
        row = await session.scalar(
            select(SandboxEvent)
            .where(SandboxEvent.type == event_type)
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row


async def make_customer(sandbox: Sandbox) -> str:
    created = await sandbox.stripe("POST", "/v1/customers", {"email": "e@example.com"})
    assert created.status_code == 200
    return str(created.json()["id"])


class TestSignature:
    def test_sign_is_stripes_scheme(self) -> None:
        body = b'{"id": "evt_1"}'
        assert sign(body, "whsec_x", 1_700_000_000) == stripe_signature(
            body, "whsec_x", 1_700_000_000
        )

    async def test_delivered_events_pass_the_real_verification(self, sandbox: Sandbox) -> None:
        await make_customer(sandbox)

        await sandbox.deliver()

        request = next(
            call.request
            for call in sandbox.mock.calls
            if call.request.url.path == "/api/v1/webhooks/stripe"
        )
        header = request.headers["Stripe-Signature"]
        secret = sandbox_webhook_secret(sandbox.settings)
        verify_webhook_signature(request.content, header, [secret], 300)
        with pytest.raises(InvalidWebhookSignature):
            verify_webhook_signature(request.content, header, ["whsec_other"], 300)
        with pytest.raises(InvalidWebhookSignature):
            verify_webhook_signature(request.content + b" ", header, [secret], 300)
        # The secret is random per data folder, not a constant anyone could read.
        assert secret != "whsec_sandbox_dev_only"
        event = json.loads(request.content)
        assert set(event) == set(stripe_object("event"))
        assert event["id"].startswith("evt_")
        assert (event["type"], event["livemode"]) == ("customer.created", False)
        assert event["api_version"] == "2026-10-28.endive"
        assert event["request"]["id"].startswith("req_")
        assert [e.status for e in await _inbox(sandbox, event["id"])] == ["ignored"]

    async def test_connect_events_go_to_the_connect_endpoint(self, sandbox: Sandbox) -> None:
        await sandbox.onboard(f"payee_{uuid.uuid4().hex[:8]}")

        paths = [
            call.request.url.path
            for call in sandbox.mock.calls
            if call.request.url.path.startswith("/api/v1/webhooks/")
        ]
        event = sandbox.webhook_calls()[-1]

        assert paths == ["/api/v1/webhooks/stripe/connect"]
        assert event["type"] == "account.updated"
        assert event["account"] == event["data"]["object"]["id"]
        assert event["data"]["previous_attributes"]["payouts_enabled"] is False


async def _inbox(sandbox: Sandbox, event_id: str) -> list[WebhookEvent]:
    async with sandbox.sessionmaker() as session:
        return list(
            await session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.id == event_id)
                .execution_options(populate_existing=True)
            )
        )


class TestOutbox:
    async def test_nothing_is_emitted_when_the_change_rolls_back(
        self, sandbox: Sandbox, sandbox_settings: Settings
    ) -> None:
        class Boom(Exception):
            pass

        async def change_then_fail() -> None:
            async with sandbox.sessionmaker.begin() as session:
                await SandboxStripe(session, sandbox_settings).create_customer(Params({}))
                raise Boom

        with pytest.raises(Boom):
            await change_then_fail()

        assert await queued_jobs(sandbox) == []
        assert await run_delivery_jobs(sandbox.sessionmaker, sandbox_settings) == 0
        assert sandbox.webhook_calls() == []

    async def test_a_refused_page_action_emits_nothing(self, sandbox: Sandbox) -> None:
        refused = await sandbox.click("/sandbox/admin/payouts/po_missing", outcome="paid")

        assert refused.status_code == 409
        assert await sandbox.deliver() == []


async def queued_jobs(sandbox: Sandbox) -> list[tuple[str, timedelta]]:
    """The queued delivery jobs (payload, delay after the test transaction's ``now()``,
    the moment every job of the test was queued at)."""
    async with sandbox.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT payload, execute_after - now() FROM pgqueuer"
                " WHERE entrypoint = :entrypoint ORDER BY id"
            ),
            {"entrypoint": DELIVER_JOB},
        )
        return [(bytes(payload).decode(), delay) for payload, delay in rows.all()]


class TestJobs:
    async def test_each_event_is_a_job_on_the_service_queue(self, sandbox: Sandbox) -> None:
        """Queued in the transaction of the change (pgqueuer, as every other job)."""
        await make_customer(sandbox)

        row = await event_row(sandbox, "customer.created")
        assert await queued_jobs(sandbox) == [(f"{row.id}:0", timedelta(0))]
        assert await sandbox.deliver() == ["customer.created"]
        assert await queued_jobs(sandbox) == []

    async def test_a_twin_job_does_not_deliver_twice(
        self, sandbox: Sandbox, sandbox_settings: Settings
    ) -> None:
        """A resend or the sweep may queue an attempt already taken: it does nothing."""
        await make_customer(sandbox)
        row = await event_row(sandbox, "customer.created")
        async with sandbox.sessionmaker.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, status)"
                    " VALUES (0, :entrypoint, :payload, now(), 'queued')"
                ),
                {"entrypoint": DELIVER_JOB, "payload": f"{row.id}:0".encode()},
            )

        assert await run_delivery_jobs(sandbox.sessionmaker, sandbox_settings) == 2
        assert [event["id"] for event in sandbox.webhook_calls()] == [row.id]
        assert (await event_row(sandbox, "customer.created")).attempts == 1

    async def test_housekeeping_queues_an_event_whose_job_was_lost(
        self, sandbox: Sandbox, sandbox_settings: Settings
    ) -> None:
        """A process killed in the middle of a delivery: the lease runs out, the sweep
        queues the next attempt."""
        await make_customer(sandbox)
        row = await event_row(sandbox, "customer.created")
        async with sandbox.sessionmaker.begin() as session:
            await session.execute(
                text("DELETE FROM pgqueuer WHERE entrypoint = :e"), {"e": DELIVER_JOB}
            )
            await session.execute(
                text("UPDATE sandbox_events SET attempts = 1, next_attempt_at = :t WHERE id = :id"),
                {"t": utcnow(), "id": row.id},
            )

        await housekeeping(sandbox.sessionmaker, sandbox_settings)
        assert await queued_jobs(sandbox) == []  # still leased: maybe in flight
        await housekeeping(
            sandbox.sessionmaker, sandbox_settings, now=utcnow() + timedelta(minutes=2)
        )

        assert await queued_jobs(sandbox) == [(f"{row.id}:1", timedelta(0))]
        assert await sandbox.deliver() == ["customer.created"]
        assert (await event_row(sandbox, "customer.created")).attempts == 2


class TestRetries:
    async def test_a_failed_delivery_is_retried_with_backoff(
        self, sandbox: Sandbox, sandbox_settings: Settings
    ) -> None:
        await make_customer(sandbox)
        sandbox.webhook_outage = 2
        start = await database_now(sandbox.sessionmaker)

        async def run(at: datetime) -> int:
            return await run_delivery_jobs(sandbox.sessionmaker, sandbox_settings, at=at)

        assert await run(start) == 1
        first = await event_row(sandbox, "customer.created")
        assert (first.status, first.attempts, first.last_status) == ("pending", 1, 503)
        assert first.next_attempt_at == start + retry_delay(1)
        # The next attempt is a job delayed by the backoff: not due yet, nothing is sent.
        assert await queued_jobs(sandbox) == [(f"{first.id}:1", retry_delay(1))]
        assert await run(start) == 0

        later = start + timedelta(seconds=6)
        assert await run(later) == 1
        second = await event_row(sandbox, "customer.created")
        assert (second.attempts, second.next_attempt_at) == (2, later + retry_delay(2))
        assert await queued_jobs(sandbox) == [(f"{first.id}:2", retry_delay(2))]
        assert retry_delay(2) == 2 * retry_delay(1)

        latest = start + timedelta(seconds=11)
        assert await run(latest) == 1
        done = await event_row(sandbox, "customer.created")
        assert (done.status, done.attempts, done.last_status) == ("delivered", 3, 200)
        assert await queued_jobs(sandbox) == []
        answers = [
            call.response.status_code
            for call in sandbox.mock.calls
            if call.request.url.path == "/api/v1/webhooks/stripe"
        ]
        assert answers == [503, 503, 200]

    async def test_gives_up_after_the_last_attempt_until_resent(
        self, sandbox: Sandbox, sandbox_settings: Settings
    ) -> None:
        await make_customer(sandbox)
        sandbox.webhook_outage = MAX_ATTEMPTS
        when = await database_now(sandbox.sessionmaker)
        for _ in range(MAX_ATTEMPTS):
            assert await run_delivery_jobs(sandbox.sessionmaker, sandbox_settings, at=when) == 1
            when += timedelta(hours=2)
        gave_up = await event_row(sandbox, "customer.created")
        assert (gave_up.status, gave_up.next_attempt_at) == ("failed", None)
        assert await queued_jobs(sandbox) == []

        resend = await sandbox.click(f"/sandbox/admin/events/{gave_up.id}/resend")

        assert resend.status_code == 303
        assert await sandbox.deliver() == ["customer.created"]
        assert (await event_row(sandbox, "customer.created")).status == "delivered"


class TestSandboxWorker:
    async def test_the_web_process_consumer_delivers_committed_events(
        self, engine: AsyncEngine, database_url: str, sandbox_settings: Settings
    ) -> None:
        """What ``serve`` runs: pgqueuer picks the job the commit queued and POSTs the
        event (committed for real on its own sessions, then removed)."""
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        received = asyncio.Event()
        bodies: list[bytes] = []

        def webhook(request: httpx.Request) -> httpx.Response:
            bodies.append(request.content)
            received.set()
            return httpx.Response(200, json={"status": "processed"})

        async with sessionmaker.begin() as session:
            payload = await SandboxStripe(session, sandbox_settings).create_customer(
                Params({"email": "bg@example.com"})
            )
        try:
            with respx.mock(base_url="http://testserver", assert_all_called=False) as mock:
                mock.post("/api/v1/webhooks/stripe").mock(side_effect=webhook)
                worker = SandboxWorker(database_url, sessionmaker, sandbox_settings)
                await worker.start()
                try:
                    await asyncio.wait_for(received.wait(), timeout=10)
                    event = json.loads(bodies[0])
                    await asyncio.wait_for(_delivered(sessionmaker, event["id"]), timeout=10)
                finally:
                    await worker.stop()
            assert event["data"]["object"]["id"] == payload["id"]
            assert len(bodies) == 1
        finally:
            await _cleanup(sessionmaker, payload["id"])


async def _delivered(sessionmaker: async_sessionmaker[AsyncSession], event_id: str) -> None:
    while True:
        async with sessionmaker() as session:
            row = await session.get(SandboxEvent, event_id)
            if row is not None and row.status == "delivered":
                return
        await asyncio.sleep(0.05)


async def _cleanup(sessionmaker: async_sessionmaker[AsyncSession], object_id: str) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(delete(SandboxObject).where(SandboxObject.id == object_id))
        await session.execute(
            delete(SandboxEvent).where(
                SandboxEvent.payload["data"]["object"]["id"].astext == object_id
            )
        )
        await session.execute(
            text("DELETE FROM pgqueuer_schedules WHERE entrypoint = :e"),
            {"e": HOUSEKEEPING_SCHEDULE},
        )


class TestSandboxSecret:
    def test_random_per_data_folder_kept_private_and_stable(self, tmp_path: Path) -> None:
        first = Settings(_env_file=None, data_dir=tmp_path / "one")
        second = Settings(_env_file=None, data_dir=tmp_path / "two")
        secret = sandbox_webhook_secret(first)
        assert secret.startswith("whsec_")
        assert len(secret) >= 40
        assert sandbox_webhook_secret(second) != secret
        # Read back (another process, a restart): the same value from the same folder.
        stored = tmp_path / "one" / "sandbox-webhook-secret"
        assert stored.read_text() == secret
        assert stored.stat().st_mode & 0o777 == 0o600

    def test_the_old_published_constant_is_refused(self, tmp_path: Path) -> None:
        settings = Settings(_env_file=None, data_dir=tmp_path / "d", stripe_webhook_secrets=[])
        accepted = webhook_secrets(settings, "platform")
        assert accepted == [sandbox_webhook_secret(settings)]
        assert "whsec_sandbox_dev_only" not in accepted
