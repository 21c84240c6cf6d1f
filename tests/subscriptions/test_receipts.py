"""Receipts for paid subscription invoices: signed ``invoice.paid`` webhooks, then the
worker's receipt job against a real SMTP server in the test process (aiosmtpd)."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass

import httpx
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.events.receipts import ReceiptSender
from payments_api.settings import Settings
from payments_api.subscriptions.models import PlanPrice, PlanProduct, Subscription
from payments_api.users.models import User
from tests.events.test_receipts import Inbox, receipt_settings, smtp
from tests.helpers import make_event
from tests.subscriptions.conftest import deliver, fee_routes, invoice

__all__ = ["smtp"]  # the aiosmtpd server fixture, shared with the events' receipt tests

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Subscriber:
    user: str
    email: str
    stripe_sub: str
    our_id: int


async def subscriber(sessions: Sessions, currency: str, amount: int) -> Subscriber:
    """A committed subscriber with an email, on an archived plan of its own (so the plan
    never shows in other tests' plan lists)."""
    tag = uuid.uuid4().hex[:10]
    user, price_id = f"u_rcpt_{tag}", f"price_rcpt_{tag}"
    async with sessions.begin() as session:
        session.add(User(id=user, roles=["customer"], email=f"{user}@example.com"))
        session.add(
            PlanProduct(
                stripe_product_id=f"prod_rcpt_{tag}",
                name="Receipts",
                active=False,
                features=[],
                metadata_={},
                family=f"f_{tag}",
                stripe_state_at=0,
            )
        )
        session.add(
            PlanPrice(
                stripe_price_id=price_id,
                stripe_product_id=f"prod_rcpt_{tag}",
                active=False,
                unit_amount=amount,
                currency=currency,
                interval="month",
                interval_count=1,
                metadata_={},
                stripe_state_at=0,
            )
        )
        await session.flush()
        row = Subscription(
            user_id=user,
            stripe_price_id=price_id,
            family=f"f_{tag}",
            status="active",
            idempotency_key="k",
            request_fingerprint="f",
            stripe_subscription_id=f"sub_rcpt_{tag}",
            cancel_at_period_end=False,
        )
        session.add(row)
    return Subscriber(user, f"{user}@example.com", f"sub_rcpt_{tag}", row.id)


async def pay(
    client: httpx.AsyncClient,
    mock: respx.MockRouter,
    who: Subscriber,
    invoice_id: str,
    amount: int,
    currency: str,
    *,
    deliveries: int = 1,
) -> None:
    """Stripe's ``invoice.paid`` for the invoice: redelivered (same event) and sent again
    (a new event for the same invoice), ``deliveries`` times each."""
    paid = invoice(
        invoice_id, stripe_sub=who.stripe_sub, amount=amount, currency=currency, our_id=who.our_id
    )
    if amount:
        fee_routes(mock, invoice_id, fee=30, charge=f"ch_{invoice_id}", currency=currency)
    event = make_event("invoice.paid", paid)
    for n in range(deliveries):
        for body in (event, make_event("invoice.paid", paid)):
            response = await deliver(client, body)
            assert response.status_code == 200, (n, response.text)


def to(inbox: Inbox, *who: Subscriber) -> list[str]:
    """The recipients of the messages sent to these subscribers (other tests' receipts,
    committed in the same database, may be in the inbox too)."""
    wanted = {w.email for w in who}
    return sorted(str(m["To"]) for m in inbox.messages if m["To"] in wanted)


def plain(inbox: Inbox, who: Subscriber) -> str:
    [message] = [m for m in inbox.messages if m["To"] == who.email]
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def event_time(sessions: Sessions, invoice_id: str) -> str:
    async with sessions() as session:
        created = await session.scalar(
            text("SELECT created_at FROM events WHERE change_key = :key"),
            {"key": f"invoice:{invoice_id}:paid"},
        )
    assert created is not None
    return f"{created:%Y-%m-%d %H:%M} UTC"


async def test_one_receipt_per_paid_invoice_in_each_currency_and_never_twice(
    committed_client: httpx.AsyncClient,
    engine: AsyncEngine,
    stripe_mock: respx.MockRouter,
    settings: Settings,
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    usd = await subscriber(sessions, "usd", 1_900)
    jpy = await subscriber(sessions, "jpy", 980)
    kwd = await subscriber(sessions, "kwd", 4_250)
    tag = uuid.uuid4().hex[:8]
    invoices = {w.user: f"in_rcpt_{tag}_{w.user[-4:]}" for w in (usd, jpy, kwd)}
    for who, amount, currency in ((usd, 1_900, "usd"), (jpy, 980, "jpy"), (kwd, 4_250, "kwd")):
        await pay(committed_client, stripe_mock, who, invoices[who.user], amount, currency)
    # The job first runs while the mail server is down: nothing sent, nothing lost.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = ReceiptSender(sessions, receipt_settings(settings, closed))
    await down.sweep(limit=1_000)
    assert to(inbox, usd, jpy, kwd) == []

    sender = ReceiptSender(sessions, receipt_settings(settings, port))
    await sender.sweep(limit=1_000)
    assert to(inbox, usd, jpy, kwd) == sorted([usd.email, jpy.email, kwd.email])
    assert "Amount:    19.00 USD" in plain(inbox, usd)
    assert "Amount:    980 JPY" in plain(inbox, jpy)
    assert "Amount:    4.250 KWD" in plain(inbox, kwd)
    usd_body = plain(inbox, usd)
    assert f"Reference: {invoices[usd.user]}" in usd_body
    assert "Gig Market" in usd_body
    assert f"Date:      {await event_time(sessions, invoices[usd.user])}" in usd_body
    [usd_message] = [m for m in inbox.messages if m["To"] == usd.email]
    assert usd_message["Subject"] == (f"Gig Market: receipt for subscription {invoices[usd.user]}")
    html = usd_message.get_body(("html",))
    assert html is not None
    assert "<td>19.00 USD</td>" in str(html.get_content())

    # The job again, Stripe redelivering invoice.paid, and the job after that: no second.
    await sender.sweep(limit=1_000)
    await pay(committed_client, stripe_mock, usd, invoices[usd.user], 1_900, "usd", deliveries=2)
    await sender.sweep(limit=1_000)
    assert to(inbox, usd, jpy, kwd) == sorted([usd.email, jpy.email, kwd.email])
    async with sessions() as session:
        rows = await session.scalar(
            text(
                "SELECT count(*) FROM email_receipts r JOIN events e ON e.id = r.event_id "
                "WHERE e.change_key = ANY(:keys) AND r.status = 'sent'"
            ),
            {"keys": [f"invoice:{i}:paid" for i in invoices.values()]},
        )
    assert rows == 3


async def test_a_renewal_a_month_later_gets_its_own_receipt_and_a_zero_invoice_none(
    committed_client: httpx.AsyncClient,
    engine: AsyncEngine,
    stripe_mock: respx.MockRouter,
    settings: Settings,
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    who = await subscriber(sessions, "usd", 900)
    tag = uuid.uuid4().hex[:8]
    sender = ReceiptSender(sessions, receipt_settings(settings, port))
    # A trial's first invoice: paid, at zero; no payment, so no receipt.
    await pay(committed_client, stripe_mock, who, f"in_trial_{tag}", 0, "usd")
    await sender.sweep(limit=1_000)
    assert to(inbox, who) == []
    await pay(committed_client, stripe_mock, who, f"in_m1_{tag}", 900, "usd")
    await pay(committed_client, stripe_mock, who, f"in_m2_{tag}", 900, "usd")
    await sender.sweep(limit=1_000)
    assert to(inbox, who) == [who.email, who.email]
    references = sorted(
        line
        for m in inbox.messages
        if m["To"] == who.email
        for line in str(m.get_body(("plain",)).get_content()).splitlines()  # type: ignore[union-attr]
        if line.startswith("Reference:")
    )
    assert references == [f"Reference: in_m1_{tag}", f"Reference: in_m2_{tag}"]
