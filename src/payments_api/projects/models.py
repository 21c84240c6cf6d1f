"""Projects (a payee's earning contexts), their sessions, and direct payments to them.

A project is a shop, a show, a channel: something customers pay a payee for. A session
is a time-boxed earning window of a project (one show night), opened and closed by the
payee. A direct payment (tip, pay-per-request) goes to the payee's connected account as
a Stripe destination charge; ``direct_payments`` is its reporting row, written once per
PaymentIntent when Stripe confirms it, from which the wallet aggregates are summed.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

PROJECT_STATUSES = ("active", "archived")
SESSION_STATUSES = ("open", "closed")
DIRECT_PAYMENT_KINDS = ("tip", "request")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Project(TimestampMixin, Base):
    """A payee's earning context. Payments to it are in its one ``currency``, so its
    aggregates are plain sums."""

    __tablename__ = "projects"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(PROJECT_STATUSES)})", name="status"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        sa.Index("ix_projects_owner_id_id", "owner_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    owner_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    """The payee who earns from it; the only user who may see or change it."""
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str | None] = mapped_column(sa.Text)
    currency: Mapped[str] = mapped_column(sa.String(3))
    """Every direct payment to the project is in this currency (fixed at creation)."""
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'active'"))
    """active: takes payments; archived: takes none, history kept."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class ProjectSession(TimestampMixin, Base):
    """A time-boxed earning window of a project; at most one is open per project."""

    __tablename__ = "project_sessions"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(SESSION_STATUSES)})", name="status"),
        sa.CheckConstraint("(status = 'open') = (closed_at IS NULL)", name="closed_at"),
        sa.Index("ix_project_sessions_project_id_id", "project_id", "id"),
        # Opening a second window while one is open is refused by the database too, so
        # two concurrent "open" calls cannot both succeed.
        sa.Index(
            "project_sessions_project_id_open_key",
            "project_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("projects.id"))
    title: Mapped[str | None] = mapped_column(sa.String(120))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'open'"))
    opened_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
    closed_at: Mapped[datetime | None] = mapped_column()
    """Set when the payee closes the window; payments are no longer started for it."""


class DirectPayment(TimestampMixin, Base):
    """A confirmed direct payment to a payee: the reporting row of one PaymentIntent.

    The money itself never passes through a wallet: Stripe moved ``amount`` to the
    payee's connected account and took ``application_fee_amount`` back for the platform
    (the ledger records only that fee). ``net_amount`` is the payee's earning.
    """

    __tablename__ = "direct_payments"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({_in(DIRECT_PAYMENT_KINDS)})", name="kind"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "application_fee_amount >= 0 AND application_fee_amount <= amount",
            name="application_fee_amount",
        ),
        sa.CheckConstraint("net_amount = amount - application_fee_amount", name="net_amount"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount"
            " AND refunded_fee_amount >= 0 AND refunded_fee_amount <= application_fee_amount"
            " AND refunded_fee_amount <= refunded_amount",
            name="refunded",
        ),
        sa.CheckConstraint(
            "(funding = 'card' AND stripe_payment_intent_id IS NOT NULL)"
            " OR (funding = 'wallet' AND stripe_payment_intent_id IS NULL)",
            name="funding",
        ),
        sa.UniqueConstraint("stripe_payment_intent_id"),
        sa.UniqueConstraint("order_id"),
        # Serves the per-project and per-session sums of the wallet.
        sa.Index("ix_direct_payments_project_id_session_id", "project_id", "session_id"),
        sa.Index("ix_direct_payments_session_id", "session_id"),
        # Serves the earnings' payout statuses (a payee's direct payments and refunds).
        sa.Index("ix_direct_payments_payee_id", "payee_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255))
    """Unique: both of Stripe's confirmations of one payment record it once. NULL for a
    payment from the wallet (``funding = 'wallet'``)."""
    funding: Mapped[str] = mapped_column(sa.String(8), server_default=sa.text("'card'"))
    """``card``: a destination charge (the money is on the payee's connected account);
    ``wallet``: paid from the payer's available balance, the payee's take credited to
    the payee's available balance in the ledger (once per order)."""
    order_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("orders.id"))
    payer_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    payee_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    project_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("projects.id"))
    session_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("project_sessions.id")
    )
    kind: Mapped[str] = mapped_column(sa.String(16))
    """tip, or request (a paid request: counted in ``paid_request_count``)."""
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    """What the customer paid, minor units."""
    application_fee_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """The platform's fee, as asked of Stripe when the payment was created."""
    net_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """The payee's earning: ``amount - application_fee_amount``."""
    currency: Mapped[str] = mapped_column(sa.String(3))
    stripe_account_id: Mapped[str] = mapped_column(sa.String(255))
    """The connected account the charge was destined to."""
    paid_at: Mapped[datetime] = mapped_column()
    """When Stripe's confirmation was applied."""
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Refunded to the customer so far (settled refunds only)."""
    refunded_fee_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Of ``refunded_amount``, what came out of the application fee; the rest was
    reversed from the payee's connected account."""
