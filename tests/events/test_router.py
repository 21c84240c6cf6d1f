"""Endpoints (admin), the event feeds and low-balance alerts, through HTTP; events come
from real flows (an escrow through the API, ledger postings), each emitted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.models import OutboxEvent
from tests.escrow.helpers import ESCROWS, headers, offer, parties
from tests.factories import fund
from tests.helpers import auth

ADMIN = auth("events-admin", ["admin"])
ENDPOINTS = "/api/v1/admin/webhook-endpoints"


@pytest.fixture
async def api(app_factory: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API with loopback endpoints allowed (the tests register 127.0.0.1 URLs)."""
    app = app_factory(events_allow_private_addresses=True)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def admin(key: str | None = None) -> dict[str, str]:
    return headers("events-admin", ["admin"], key)


async def create_endpoint(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post(
        ENDPOINTS, json={"url": "http://127.0.0.1:9/hooks"} | body, headers=admin()
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_the_secret_is_shown_once(api: httpx.AsyncClient) -> None:
    created = await create_endpoint(api, event_types=["escrow.completed", "topup.succeeded"])
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["escrow.completed", "topup.succeeded"]
    shown = await api.get(f"{ENDPOINTS}/{created['id']}", headers=ADMIN)
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    listed = await api.get(ENDPOINTS, headers=ADMIN)
    assert [e for e in listed.json()["data"] if e["id"] == created["id"]] == [shown.json()]


async def test_endpoints_are_for_admins(api: httpx.AsyncClient) -> None:
    response = await api.post(
        ENDPOINTS,
        json={"url": "http://127.0.0.1:9/hooks"},
        headers=headers("someone", ["customer"]),
    )
    assert response.status_code == 403
    assert (await api.get(ENDPOINTS, headers=auth("someone"))).status_code == 403


async def test_an_unknown_event_type_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(
        ENDPOINTS,
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["escrow.exploded"]},
        headers=admin(),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_a_loopback_url_is_refused_unless_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        ENDPOINTS, json={"url": "http://127.0.0.1:9/hooks"}, headers=admin()
    )
    assert response.status_code == 422
    assert response.json()["code"] == "webhook_url_refused"
    assert "loopback" in response.json()["detail"]
    listed = await client.get(ENDPOINTS, headers=ADMIN)
    assert [e["url"] for e in listed.json()["data"]] == []


async def test_rotate_disable_enable(api: httpx.AsyncClient) -> None:
    created = await create_endpoint(api)
    rotated = await api.post(
        f"{ENDPOINTS}/{created['id']}/rotate-secret", json={"overlap_seconds": 600}, headers=admin()
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (created["secret"], None)
    assert rotated.json()["previous_secret_expires_at"] is not None

    disabled = await api.post(f"{ENDPOINTS}/{created['id']}/disable", headers=ADMIN)
    assert (disabled.json()["status"], disabled.json()["disabled_reason"]) == (
        "disabled",
        "Disabled by an admin.",
    )
    enabled = await api.post(f"{ENDPOINTS}/{created['id']}/enable", headers=ADMIN)
    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("enabled", None)


async def test_a_test_event_goes_to_that_endpoint_only(api: httpx.AsyncClient) -> None:
    target = await create_endpoint(api)
    other = await create_endpoint(api)
    key = admin()
    sent = await api.post(f"{ENDPOINTS}/{target['id']}/test", headers=key)
    assert sent.status_code == 201, sent.text
    assert sent.json()["type"] == "webhook_endpoint.tested"
    assert sent.json()["data"]["object"]["id"] == target["id"]
    replayed = await api.post(f"{ENDPOINTS}/{target['id']}/test", headers=key)
    assert replayed.json()["id"] == sent.json()["id"]

    deliveries = (await api.get(f"{ENDPOINTS}/{target['id']}/deliveries", headers=ADMIN)).json()
    assert [(d["event_id"], d["status"], d["attempts"]) for d in deliveries["data"]] == [
        (sent.json()["id"], "pending", [])
    ]
    others = (await api.get(f"{ENDPOINTS}/{other['id']}/deliveries", headers=ADMIN)).json()
    assert others["data"] == []

    redelivered = await api.post(
        f"/api/v1/admin/event-deliveries/{deliveries['data'][0]['id']}/redeliver", headers=ADMIN
    )
    assert redelivered.status_code == 200
    assert redelivered.json()["status"] == "pending"
    missing = await api.post(
        "/api/v1/admin/event-deliveries/del_999999999/redeliver", headers=ADMIN
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "event_delivery_not_found")
    unknown = await api.get(f"{ENDPOINTS}/we_999999999", headers=ADMIN)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "webhook_endpoint_not_found")


async def _events(session: AsyncSession, escrow_id: str) -> list[str]:
    rows = await session.scalars(
        select(OutboxEvent.type)
        .where(OutboxEvent.change_key.like(f"escrow:{escrow_id.removeprefix('esc_')}:%"))
        .order_by(OutboxEvent.id)
    )
    return list(rows.all())


async def test_an_escrow_emits_each_change_once_and_each_party_sees_its_side(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    customer, payee = await parties(session, "ev")
    await fund(session, customer.id, 20_000)
    create_key = headers(customer.id, ["customer"])
    created = await client.post(ESCROWS, json=offer(payee.id), headers=create_key)
    assert created.status_code == 201, created.text
    escrow = created.json()["id"]
    # A retried Idempotency-Key, and a second accept: no second event.
    assert (await client.post(ESCROWS, json=offer(payee.id), headers=create_key)).json()[
        "id"
    ] == escrow
    for _ in range(2):
        accepted = await client.post(
            f"{ESCROWS}/{escrow}/accept", headers=headers(payee.id, ["payee"])
        )
        assert accepted.status_code == 200, accepted.text
    complete_key = headers(customer.id, ["customer"])
    for _ in range(2):
        completed = await client.post(f"{ESCROWS}/{escrow}/complete", headers=complete_key)
        assert completed.status_code == 200, completed.text

    assert await _events(session, escrow) == [
        "escrow.funded",
        "escrow.accepted",
        "escrow.completed",
    ]
    seen_by_payee = (
        await client.get(
            "/api/v1/me/events", params={"type": "escrow.completed"}, headers=auth(payee.id)
        )
    ).json()["data"]
    [event] = [e for e in seen_by_payee if e["data"]["object"]["id"] == escrow]
    assert event["user_ids"] == [payee.id]
    assert event["data"]["object"]["payee_amount"] == 8_000
    assert event["data"]["object"]["hold_amount"] is None  # the customer's side
    seen_by_customer = (await client.get("/api/v1/me/events", headers=auth(customer.id))).json()
    mine = [e for e in seen_by_customer["data"] if e["data"]["object"].get("id") == escrow]
    assert [e["type"] for e in mine] == ["escrow.completed", "escrow.accepted", "escrow.funded"]
    assert mine[0]["data"]["object"]["hold_amount"] == 10_500
    assert mine[0]["data"]["object"]["payee_amount"] is None
    stranger = (await client.get("/api/v1/me/events", headers=auth("a-stranger"))).json()
    assert stranger["data"] == []
    everything = (
        await client.get("/api/v1/admin/events", params={"limit": 100}, headers=ADMIN)
    ).json()
    [full] = [
        e
        for e in everything["data"]
        if e["type"] == "escrow.completed" and e["data"]["object"]["id"] == escrow
    ]
    assert sorted(full["user_ids"]) == sorted([customer.id, payee.id])
    assert (full["data"]["object"]["hold_amount"], full["data"]["object"]["payee_amount"]) == (
        10_500,
        8_000,
    )


async def test_a_cancelled_escrow_emits_cancelled_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    customer, payee = await parties(session, "cancel")
    await fund(session, customer.id, 20_000)
    created = await client.post(
        ESCROWS, json=offer(payee.id), headers=headers(customer.id, ["customer"])
    )
    escrow = created.json()["id"]
    key = headers(customer.id, ["customer"])
    for _ in range(2):  # a retried Idempotency-Key
        cancelled = await client.post(f"{ESCROWS}/{escrow}/cancel", json={}, headers=key)
        assert cancelled.status_code == 200, cancelled.text
    assert await _events(session, escrow) == ["escrow.funded", "escrow.cancelled"]


async def test_the_feed_pages_with_starting_after(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    customer, payee = await parties(session, "page")
    await fund(session, customer.id, 50_000)
    for _ in range(3):
        response = await client.post(
            ESCROWS, json=offer(payee.id), headers=headers(customer.id, ["customer"])
        )
        assert response.status_code == 201
    first = (
        await client.get("/api/v1/me/events", params={"limit": 2}, headers=auth(payee.id))
    ).json()
    assert (len(first["data"]), first["has_more"]) == (2, True)
    rest = (
        await client.get(
            "/api/v1/me/events",
            params={"limit": 2, "starting_after": first["data"][-1]["id"]},
            headers=auth(payee.id),
        )
    ).json()
    assert (len(rest["data"]), rest["has_more"]) == (1, False)
    ids = [e["id"] for e in first["data"] + rest["data"]]
    assert len(set(ids)) == 3
    bad = await client.get(
        "/api/v1/me/events", params={"starting_after": "esc_1"}, headers=auth(payee.id)
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")
    assert (await client.get("/api/v1/admin/events", headers=auth(payee.id))).status_code == 403


async def test_balance_low_once_per_crossing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    customer, payee = await parties(session, "low")
    await fund(session, customer.id, 30_000)
    alert = await client.put(
        "/api/v1/me/balance-alerts",
        json={"currency": "usd", "threshold": 15_000},
        headers=auth(customer.id),
    )
    assert alert.status_code == 200, alert.text
    assert alert.json() == {
        "object": "balance_alert",
        "currency": "usd",
        "threshold": 15_000,
        "below": False,
        "available": None,
    }

    async def spend() -> None:  # each escrow holds 10,500 of available
        response = await client.post(
            ESCROWS, json=offer(payee.id), headers=headers(customer.id, ["customer"])
        )
        assert response.status_code == 201, response.text

    await spend()  # 19,500: above
    await spend()  # 9,000: crosses -> one event
    await fund(session, customer.id, 100)  # 9,100: still below, nothing
    await fund(session, customer.id, 10_000)  # 19,100: back above, re-armed
    await spend()  # 8,600: crosses again -> a second event
    lows = (
        await client.get(
            "/api/v1/me/events", params={"type": "balance.low"}, headers=auth(customer.id)
        )
    ).json()["data"]
    assert [e["data"]["object"]["available"] for e in lows] == [8_600, 9_000]
    listed = (await client.get("/api/v1/me/balance-alerts", headers=auth(customer.id))).json()
    assert [(a["currency"], a["below"]) for a in listed] == [("usd", True)]
