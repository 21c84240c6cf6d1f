"""Deliveries to a real HTTP receiver on loopback, verified with the Standard Webhooks
package's own verifier: signatures, retries, timeouts, rotation, refused targets,
disabling, and two workers that never send the same attempt twice."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from payments_api.events import targets
from payments_api.events.delivery import RETRY_SCHEDULE, DeliveryService
from payments_api.events.errors import WebhookUrlRefused
from payments_api.events.models import DeliveryAttempt, EventDelivery, WebhookEndpoint
from payments_api.events.outbox import emit
from payments_api.events.schemas import BalanceAlertRead, SecretRotation, WebhookEndpointCreate
from payments_api.events.service import EventService
from payments_api.events.types import EventType
from payments_api.settings import Environment, Settings
from tests.events.conftest import Clock
from tests.events.receiver import running_receiver

Sessions = async_sessionmaker[AsyncSession]


async def register(
    sessions: Sessions, settings: Settings, url: str, types: list[EventType] | None = None
) -> tuple[int, str]:
    async with sessions.begin() as session:
        created = await EventService(session, settings).register(
            WebhookEndpointCreate(url=url, event_types=types or [])
        )
    return int(created.id.removeprefix("we_")), created.secret


async def emit_one(
    sessions: Sessions, key: str, type: EventType = EventType.balance_low, user: str = "u"
) -> int:
    async with sessions.begin() as session:
        event_id = await emit(
            session,
            type,
            BalanceAlertRead(currency="usd", threshold=500, below=True, available=120),
            change_key=key,
            user_ids=[user],
        )
    assert event_id is not None
    return event_id


async def delivery_of(sessions: Sessions, event_id: int) -> EventDelivery:
    async with sessions() as session:
        return (
            await session.scalars(select(EventDelivery).where(EventDelivery.event_id == event_id))
        ).one()


async def attempts_of(sessions: Sessions, delivery_id: int) -> list[DeliveryAttempt]:
    async with sessions() as session:
        return list(
            (
                await session.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.delivery_id == delivery_id)
                    .order_by(DeliveryAttempt.id)
                )
            ).all()
        )


async def test_a_delivery_is_signed_per_standard_webhooks(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        _, secret = await register(committed, event_settings, receiver.url)
        event_id = await emit_one(committed, "t:signed", user="alice")
        worker = DeliveryService(committed, event_settings, now=clock)
        try:
            assert await worker.deliver_event(event_id) == 1
        finally:
            await worker.aclose()
        [received] = await receiver.wait_for(1)

    # The verifier checks the timestamp against the real clock: the test clock is seconds
    # ahead of it, well within the five-minute tolerance.
    event = Webhook(secret).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == f"evt_{event_id}"
    assert received.headers["webhook-timestamp"] == str(int(clock().timestamp()))
    assert event["id"] == f"evt_{event_id}"
    assert event["type"] == "balance.low"
    assert event["user_ids"] == ["alice"]
    assert event["data"]["object"] == {
        "object": "balance_alert",
        "currency": "usd",
        "threshold": 500,
        "below": True,
        "available": 120,
    }
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").verify(
            received.body, received.headers
        )
    assert (await delivery_of(committed, event_id)).status == "succeeded"


async def test_an_error_then_success_is_delivered_with_both_attempts_recorded(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        receiver.script = [500]
        await register(committed, event_settings, receiver.url)
        event_id = await emit_one(committed, "t:retry")
        worker = DeliveryService(committed, event_settings, now=clock)
        try:
            assert await worker.deliver_event(event_id) == 1
            delivery = await delivery_of(committed, event_id)
            assert delivery.status == "pending"
            assert delivery.next_attempt_at == clock() + RETRY_SCHEDULE[0]
            # Not due yet: nothing is sent.
            assert await worker.deliver(delivery.id) == 0
            clock.advance(RETRY_SCHEDULE[0])
            assert await worker.deliver(delivery.id) == 1
        finally:
            await worker.aclose()
        received = await receiver.wait_for(2)

    assert len(received) == 2
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    delivery = await delivery_of(committed, event_id)
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)
    attempts = await attempts_of(committed, delivery.id)
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [
        (1, 500, "http_status"),
        (2, 200, None),
    ]
    # Only a bounded excerpt of a receiver's body is read and kept.
    assert attempts[0].response_excerpt == "x" * 1024


async def test_a_hanging_receiver_times_out_and_is_retried(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    settings = event_settings.model_copy(update={"events_delivery_timeout_seconds": 0.3})
    async with running_receiver() as receiver:
        receiver.script = ["hang"]
        await register(committed, settings, receiver.url)
        event_id = await emit_one(committed, "t:hang")
        worker = DeliveryService(committed, settings, now=clock)
        try:
            await worker.deliver_event(event_id)
            delivery = await delivery_of(committed, event_id)
            clock.advance(RETRY_SCHEDULE[0])
            await worker.deliver(delivery.id)
        finally:
            await worker.aclose()
    attempts = await attempts_of(committed, delivery.id)
    assert [(a.status_code, a.error) for a in attempts] == [(None, "timeout"), (200, None)]
    assert (await delivery_of(committed, event_id)).status == "succeeded"


async def test_during_a_rotation_either_secret_verifies(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        endpoint_id, old_secret = await register(committed, event_settings, receiver.url)
        async with committed.begin() as session:
            rotated = await EventService(session, event_settings).rotate_secret(
                f"we_{endpoint_id}", SecretRotation(overlap_seconds=3600)
            )
        new_secret = rotated.secret
        assert new_secret != old_secret
        worker = DeliveryService(committed, event_settings, now=clock)
        try:
            during = await emit_one(committed, "t:rotation-during")
            await worker.deliver_event(during)
            clock.advance(timedelta(hours=2))
            after = await emit_one(committed, "t:rotation-after")
            await worker.deliver_event(after)
        finally:
            await worker.aclose()
        first, second = await receiver.wait_for(2)

    assert len(first.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(first.body, first.headers)["id"] == f"evt_{during}"
    # After the overlap only the new secret signs.
    signed_late = {**second.headers, "webhook-timestamp": str(int(clock().timestamp()))}
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    assert (
        Webhook(new_secret).sign(f"evt_{after}", clock(), second.body)
        == second.headers["webhook-signature"]
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(second.body, signed_late)


async def test_a_private_address_is_refused_at_registration_and_at_send_time(
    committed: Sessions, event_settings: Settings, settings: Settings, clock: Clock
) -> None:
    async with committed.begin() as session:
        with pytest.raises(WebhookUrlRefused):
            await EventService(session, settings).register(
                WebhookEndpointCreate(url="http://127.0.0.1:9/hooks")
            )
    async with running_receiver() as receiver:
        # Registered while allowed (as a name that later resolves to loopback would be):
        # the send-time check refuses it, and nothing reaches the address.
        await register(committed, event_settings, receiver.url)
        event_id = await emit_one(committed, "t:private")
        worker = DeliveryService(committed, settings, now=clock)
        try:
            await worker.deliver_event(event_id)
        finally:
            await worker.aclose()
        assert receiver.received == []
    delivery = await delivery_of(committed, event_id)
    [attempt] = await attempts_of(committed, delivery.id)
    assert attempt.error == "target_refused"
    assert delivery.status == "pending"


async def test_production_ignores_the_private_address_setting(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    # model_copy skips the production start-up checks, which are not the point here.
    production = event_settings.model_copy(update={"environment": Environment.production})
    assert production.events_may_target_private_addresses is False
    async with running_receiver() as receiver:
        await register(committed, event_settings, receiver.url)
        event_id = await emit_one(committed, "t:production")
        worker = DeliveryService(committed, production, now=clock)
        try:
            await worker.deliver_event(event_id)
        finally:
            await worker.aclose()
        assert receiver.received == []
    [attempt] = await attempts_of(committed, (await delivery_of(committed, event_id)).id)
    assert attempt.error == "target_refused"
    assert attempt.response_excerpt == "The URL must be https in production."


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/x", "https"),
        ("https://localhost/x", "private"),
        ("https://10.1.2.3/x", "private"),
        ("https://169.254.169.254/latest", "private"),
        ("https://[::1]/x", "private"),
        ("https://[::ffff:127.0.0.1]/x", "private"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("ftp://hooks.example.com/x", "http or https"),
    ],
)
async def test_production_targets_must_be_public_https(url: str, reason: str) -> None:
    with pytest.raises(targets.TargetRefused, match=reason):
        await targets.resolve(url, require_https=True, allow_private=False)


async def test_redirects_are_not_followed(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        receiver.script = [302]
        await register(committed, event_settings, receiver.url)
        event_id = await emit_one(committed, "t:redirect")
        worker = DeliveryService(committed, event_settings, now=clock)
        try:
            await worker.deliver_event(event_id)
        finally:
            await worker.aclose()
        assert len(receiver.received) == 1
    [attempt] = await attempts_of(committed, (await delivery_of(committed, event_id)).id)
    assert (attempt.status_code, attempt.error) == (302, "redirect")


async def test_an_endpoint_failing_too_long_is_disabled_with_a_reason(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    settings = event_settings.model_copy(update={"events_disable_after_hours": 1})
    async with running_receiver() as receiver:
        receiver.script = [503, 503]
        endpoint_id, _ = await register(committed, settings, receiver.url)
        worker = DeliveryService(committed, settings, now=clock)
        try:
            await worker.deliver_event(await emit_one(committed, "t:failing-1"))
            async with committed() as session:
                endpoint = await session.get(WebhookEndpoint, endpoint_id)
                assert endpoint is not None
                assert (endpoint.status, endpoint.failing_since) == ("enabled", clock())
            clock.advance(timedelta(hours=1))
            await worker.deliver_event(await emit_one(committed, "t:failing-2"))
        finally:
            await worker.aclose()
    async with committed() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert endpoint.status == "disabled"
        assert endpoint.disabled_reason == "Every delivery failed for 1 hours."


async def test_two_workers_never_deliver_the_same_attempt_twice(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        await register(committed, event_settings, receiver.url)
        events = [await emit_one(committed, f"t:race-{n}") for n in range(20)]
        workers = [DeliveryService(committed, event_settings, now=clock) for _ in range(2)]
        try:
            counts = await asyncio.gather(*(worker.sweep() for worker in workers))
        finally:
            for worker in workers:
                await worker.aclose()
        received = await receiver.wait_for(20)
    assert sum(counts) == 20
    assert len(received) == 20
    assert sorted(r.headers["webhook-id"] for r in received) == sorted(f"evt_{e}" for e in events)


async def test_only_endpoints_that_want_the_type_get_a_delivery(
    committed: Sessions, event_settings: Settings
) -> None:
    async with running_receiver() as receiver:
        wants, _ = await register(
            committed, event_settings, receiver.url, [EventType.escrow_completed]
        )
        everything, _ = await register(committed, event_settings, receiver.url)
        event_id = await emit_one(committed, "t:filter", EventType.topup_succeeded)
    async with committed() as session:
        endpoints = (
            await session.scalars(
                select(EventDelivery.endpoint_id).where(EventDelivery.event_id == event_id)
            )
        ).all()
    assert list(endpoints) == [everything]
    assert wants != everything


async def test_a_rolled_back_change_leaves_no_event(committed: Sessions) -> None:
    async def change_that_fails() -> None:
        async with committed.begin() as session:
            await emit(
                session,
                EventType.balance_low,
                BalanceAlertRead(currency="usd", threshold=1, below=True),
                change_key="t:rolled-back",
            )
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await change_that_fails()
    async with committed() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM events WHERE change_key = 't:rolled-back'")
        )
    assert count == 0


async def test_one_change_is_one_event(committed: Sessions) -> None:
    first = await emit_one(committed, "t:once")
    async with committed.begin() as session:
        again = await emit(
            session,
            EventType.balance_low,
            BalanceAlertRead(currency="usd", threshold=1, below=True),
            change_key="t:once",
        )
    assert again is None
    async with committed() as session:
        rows = (
            await session.execute(text("SELECT id FROM events WHERE change_key = 't:once'"))
        ).all()
    assert [row.id for row in rows] == [first]


def test_the_signature_is_standard_webhooks_over_id_timestamp_and_body() -> None:
    from payments_api.events.delivery import sign

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = json.dumps({"id": "evt_1"}).encode()
    header = sign([secret], "evt_1", 1_700_000_000, body)
    import base64
    import hashlib
    import hmac

    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, b"evt_1.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert header == f"v1,{expected}"


async def test_old_events_are_pruned_unless_a_delivery_waits(
    committed: Sessions, event_settings: Settings, clock: Clock
) -> None:
    from payments_api.events.repository import EventRepository

    async with running_receiver() as receiver:
        receiver.script = [500]
        await register(committed, event_settings, receiver.url)
        waiting = await emit_one(committed, "t:prune-waiting")
        sent = await emit_one(committed, "t:prune-sent")
        worker = DeliveryService(committed, event_settings, now=clock)
        try:
            await worker.deliver_event(waiting)  # 500: still pending, retried later
            await worker.deliver_event(sent)  # 200
        finally:
            await worker.aclose()
    async with committed.begin() as session:
        # Everything up to now is "old" for this cutoff.
        # (Other tests' committed events in this database may go too: not counted here.)
        await EventRepository(session).prune(clock() + timedelta(days=1))
    async with committed() as session:
        left = (
            await session.execute(
                text("SELECT change_key FROM events WHERE change_key LIKE 't:prune-%'")
            )
        ).all()
    assert [row.change_key for row in left] == ["t:prune-waiting"]
