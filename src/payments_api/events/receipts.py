"""Email receipts, sent by the worker through SMTP when ``PAYMENTS_SMTP_URL`` is set.

Which events get one (``RECEIPTS``): a top-up paid, an order paid (catalog, escrow by
card, direct payment), a refund that reached the customer, a withdrawal paid, a
subscription invoice paid (not one of nothing: a trial's first invoice is ``paid`` at
zero, and a receipt for no payment is noise). The
recipient is the user's email from their token (stored on the user row); a user without
one gets none.

At most one per event, also with two workers or a retried job: the event's row in
``email_receipts`` is inserted before sending (the insert that wins sends); a failed send
deletes it so the next sweep tries again. A crash between the SMTP server's acceptance
and marking the row ``sent`` leaves it ``sending``: never sent twice, at the price of a
receipt that may be lost in that window (the row stays ``sending``, for an operator).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.clock import utcnow
from payments_api.money import format_minor
from payments_api.settings import Settings

log = logging.getLogger(__name__)

RECEIPTS: dict[str, tuple[str, str]] = {
    "topup.succeeded": ("Wallet top-up", "Your wallet was credited with this amount."),
    "order.paid": ("Payment", "Thank you for your payment."),
    "refund.succeeded": ("Refund", "This amount was refunded to your card."),
    "withdrawal.paid": ("Withdrawal", "This amount was sent to your payout account."),
    "invoice.paid": ("Subscription", "Thank you: your subscription invoice is paid."),
}
"""Event type -> (what it is, a sentence for the receipt)."""

RECEIPTS_SENT = Counter("payments_receipts_total", "Email receipts by outcome", ["outcome"])

_templates = Environment(
    loader=PackageLoader("payments_api.events", "templates"),
    autoescape=select_autoescape(["html", "j2"], default=False, default_for_string=False),
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("PAYMENTS_SMTP_URL must be smtp://host:port or smtps://host:port")
    query = parse_qs(parts.query)
    implicit = parts.scheme == "smtps"
    return SmtpTarget(
        hostname=parts.hostname,
        port=parts.port or (465 if implicit else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=implicit,
        start_tls=query.get("starttls", ["false"])[0].lower() == "true",
    )


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    event_id: int
    type: str
    created_at: datetime
    payload: dict[str, object]
    recipient: str


def render(receipt: PendingReceipt, merchant: str) -> EmailMessage:
    what, note = RECEIPTS[receipt.type]
    payload = receipt.payload
    # An invoice says what was paid in `amount_paid`; every other resource in `amount`.
    amount = int(str(payload.get("amount", payload.get("amount_paid", 0))))
    currency = str(payload.get("currency", "usd"))
    values = {
        "merchant": merchant,
        "what": what,
        "note": note,
        "reference": str(payload.get("id", f"evt_{receipt.event_id}")),
        "amount": format_minor(amount, currency),
        "date": receipt.created_at.strftime("%Y-%m-%d %H:%M UTC"),
    }
    message = EmailMessage()
    message["Subject"] = f"{merchant}: receipt for {what.lower()} {values['reference']}"
    message["To"] = receipt.recipient
    message["Date"] = format_datetime(receipt.created_at)
    # Stable per event: a receiving system that sees the same id twice knows it.
    message["Message-ID"] = make_msgid(idstring=f"evt-{receipt.event_id}", domain="receipts")
    message.set_content(_templates.get_template("receipt.txt.j2").render(values))
    message.add_alternative(
        _templates.get_template("receipt.html.j2").render(values), subtype="html"
    )
    return message


_PENDING = text(
    """
    SELECT e.id, e.type, e.created_at, e.payload, u.email
    FROM events AS e
    JOIN users AS u ON u.id = e.user_ids[1]
    LEFT JOIN email_receipts AS r ON r.event_id = e.id
    WHERE e.type = ANY(CAST(:types AS varchar[]))
      AND e.created_at >= CAST(:since AS timestamptz)
      AND r.event_id IS NULL
      AND u.email IS NOT NULL
      AND NOT (e.type = 'invoice.paid'
               AND coalesce(CAST(e.payload->>'amount_paid' AS bigint), 0) = 0)
    ORDER BY e.id
    LIMIT :limit
    """
)


class ReceiptSender:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.now = now
        url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
        self.target = parse_smtp_url(url) if url else None

    async def sweep(self, *, limit: int = 100) -> int:
        """Send the receipts of the last day's events that have none; how many were sent."""
        if self.target is None:
            return 0
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    _PENDING,
                    {
                        "types": list(RECEIPTS),
                        "since": self.now() - timedelta(days=1),
                        "limit": limit,
                    },
                )
            ).all()
        sent = 0
        for row in rows:
            receipt = PendingReceipt(row.id, row.type, row.created_at, row.payload, row.email)
            sent += await self.send(receipt)
        return sent

    async def send(self, receipt: PendingReceipt) -> int:
        if self.target is None:
            return 0
        async with self.sessionmaker.begin() as session:
            claimed = await session.scalar(
                text(
                    "INSERT INTO email_receipts (event_id, recipient) VALUES (:id, :to) "
                    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
                ),
                {"id": receipt.event_id, "to": receipt.recipient},
            )
        if claimed is None:
            return 0  # another worker has it, or it was sent
        message = render(receipt, self.settings.merchant_name)
        message["From"] = self.settings.receipts_from
        try:
            await aiosmtplib.send(
                message,
                hostname=self.target.hostname,
                port=self.target.port,
                username=self.target.username,
                password=self.target.password,
                use_tls=self.target.use_tls,
                start_tls=self.target.start_tls,
                timeout=10,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            async with self.sessionmaker.begin() as session:
                await session.execute(
                    text("DELETE FROM email_receipts WHERE event_id = :id AND status = 'sending'"),
                    {"id": receipt.event_id},
                )
            RECEIPTS_SENT.labels("failed").inc()
            log.warning(
                "receipt not sent; retried by the next sweep",
                extra={"event_id": receipt.event_id, "error": type(exc).__name__},
            )
            return 0
        async with self.sessionmaker.begin() as session:
            await session.execute(
                text(
                    "UPDATE email_receipts SET status = 'sent', sent_at = :now WHERE event_id = :id"
                ),
                {"id": receipt.event_id, "now": self.now()},
            )
        RECEIPTS_SENT.labels("sent").inc()
        return 1
