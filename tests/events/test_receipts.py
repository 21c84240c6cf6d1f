"""Email receipts against a real SMTP server in the test process (aiosmtpd): one per
event, amounts in each currency's format, never twice when the job runs again."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.events.outbox import emit
from payments_api.events.receipts import ReceiptSender, parse_smtp_url
from payments_api.events.types import EventType
from payments_api.orders.schemas import OrderRead
from payments_api.settings import Settings
from tests.events.conftest import Clock

Sessions = async_sessionmaker[AsyncSession]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def receipt_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": SecretStr(f"smtp://127.0.0.1:{port}"),
            "merchant_name": "Gig Market",
            "receipts_from": "receipts@gig.example",
        }
    )


async def paid_topup(
    sessions: Sessions, user: str, amount: int, currency: str, number: int, clock: Clock
) -> int:
    async with sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO users (id, roles, email) VALUES (:id, '{customer}', :email) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            {"id": user, "email": f"{user}@example.com"},
        )
        event_id = await emit(
            session,
            EventType.topup_succeeded,
            OrderRead(
                id=f"ord_{number}",
                purpose="topup",
                status="succeeded",
                amount=amount,
                currency=currency,
                discount_amount=0,
                refunded_amount=0,
                failure_code=None,
                checkout_url=None,
                expires_at=None,
                created_at=clock(),
                succeeded_at=clock(),
                review_reason=None,
                paid_amount=None,
                paid_currency=None,
            ),
            change_key=f"t:receipt:{user}:{number}",
            user_ids=[user],
        )
    assert event_id is not None
    return event_id


async def test_one_receipt_per_event_in_each_currency_format(
    committed: Sessions, settings: Settings, smtp: tuple[Inbox, int], clock: Clock
) -> None:
    inbox, port = smtp
    await paid_topup(committed, "rcpt-usd", 123_456, "usd", 9_001, clock)
    await paid_topup(committed, "rcpt-jpy", 5_000, "jpy", 9_002, clock)
    await paid_topup(committed, "rcpt-kwd", 12_345, "kwd", 9_003, clock)
    sender = ReceiptSender(committed, receipt_settings(settings, port), now=clock)

    assert await sender.sweep() == 3
    assert await sender.sweep() == 0  # the job again: nothing twice
    by_recipient = {m["To"]: m for m in inbox.messages}
    assert sorted(by_recipient) == [
        "rcpt-jpy@example.com",
        "rcpt-kwd@example.com",
        "rcpt-usd@example.com",
    ]
    amounts = {
        to: message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for to, message in by_recipient.items()
    }
    assert "Amount:    1234.56 USD" in amounts["rcpt-usd@example.com"]
    assert "Amount:    5000 JPY" in amounts["rcpt-jpy@example.com"]
    assert "Amount:    12.345 KWD" in amounts["rcpt-kwd@example.com"]
    usd = by_recipient["rcpt-usd@example.com"]
    assert usd["Subject"] == "Gig Market: receipt for wallet top-up ord_9001"
    assert usd["From"] == "receipts@gig.example"
    html = usd.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<td>1234.56 USD</td>" in html
    assert "Gig Market" in html
    assert "Reference: ord_9001" in amounts["rcpt-usd@example.com"]
    async with committed() as session:
        created = await session.scalar(
            text("SELECT created_at FROM events WHERE change_key = 't:receipt:rcpt-usd:9001'")
        )
    assert created is not None
    # The event's own time (the database's clock), not the sender's.
    assert f"Date:      {created:%Y-%m-%d %H:%M} UTC" in amounts["rcpt-usd@example.com"]


async def test_two_senders_at_once_send_one_receipt(
    committed: Sessions, settings: Settings, smtp: tuple[Inbox, int], clock: Clock
) -> None:
    import asyncio

    inbox, port = smtp
    await paid_topup(committed, "rcpt-race", 1_000, "usd", 9_010, clock)
    senders = [ReceiptSender(committed, receipt_settings(settings, port), now=clock) for _ in "ab"]
    counts = await asyncio.gather(*(sender.sweep() for sender in senders))
    assert sorted(counts) == [0, 1]
    assert [m["To"] for m in inbox.messages] == ["rcpt-race@example.com"]


async def test_a_failed_send_is_retried_and_then_sent_once(
    committed: Sessions, settings: Settings, smtp: tuple[Inbox, int], clock: Clock
) -> None:
    inbox, port = smtp
    await paid_topup(committed, "rcpt-retry", 1_000, "usd", 9_020, clock)
    with socket.socket() as probe:  # a port nobody listens on: the send fails
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert (
        await ReceiptSender(committed, receipt_settings(settings, closed), now=clock).sweep() == 0
    )
    sender = ReceiptSender(committed, receipt_settings(settings, port), now=clock)
    assert await sender.sweep() == 1
    assert await sender.sweep() == 0
    assert [m["To"] for m in inbox.messages] == ["rcpt-retry@example.com"]


async def test_without_smtp_nothing_is_sent(
    committed: Sessions, settings: Settings, clock: Clock
) -> None:
    await paid_topup(committed, "rcpt-off", 1_000, "usd", 9_030, clock)
    assert await ReceiptSender(committed, settings, now=clock).sweep() == 0
    async with committed() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM email_receipts r JOIN events e ON e.id = r.event_id "
                "WHERE e.change_key LIKE 't:receipt:rcpt-off:%'"
            )
        )
    assert count == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example:2525", ("mail.example", 2525, None, None, False, False)),
        ("smtps://u%40x:p%2Fw@mail.example", ("mail.example", 465, "u@x", "p/w", True, False)),
        ("smtp://mail.example:587?starttls=true", ("mail.example", 587, None, None, False, True)),
    ],
)
def test_smtp_urls(url: str, expected: tuple[object, ...]) -> None:
    target = parse_smtp_url(url)
    assert (
        target.hostname,
        target.port,
        target.username,
        target.password,
        target.use_tls,
        target.start_tls,
    ) == expected
