"""Direct payments to a payee (tips, pay-per-request): rules and confirmation.

A direct payment is a Stripe *destination charge*: the customer pays through Checkout,
Stripe moves the whole amount to the payee's connected account
(``payment_intent_data[transfer_data][destination]``) and takes the platform's
application fee back from it (``payment_intent_data[application_fee_amount]``). No
wallet is involved; the ledger records only the platform's fee, and the payee's take
goes to the reporting tables (``direct_payments``, ``earnings``).

``resolve_target`` runs inside the transaction that writes the pending order (so a
refusal writes nothing); ``record_paid`` runs inside the webhook's transaction, once per
PaymentIntent, whichever of Stripe's confirmations comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.earnings import service as earnings_service
from payments_api.earnings.models import EarningSource
from payments_api.events.types import EventType
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import receive
from payments_api.money import basis_points_of
from payments_api.orders.chosen_amount import ChosenAmountPurpose
from payments_api.orders.models import Order
from payments_api.orders.purposes import (
    CheckoutLine,
    CheckoutRequest,
    PaidPayment,
    RefundBooking,
    RefundTerms,
    StripeRefundOptions,
    WalletRefundBooking,
)
from payments_api.payout_accounts.repository import PayoutAccountRepository
from payments_api.projects import direct_refunds
from payments_api.projects.errors import (
    CurrencyMismatch,
    PayeeCannotReceivePayments,
    PayeeNotFound,
    ProjectArchived,
    SelfPayment,
    SessionClosed,
)
from payments_api.projects.payee_projects import PROJECT_PREFIX as PROJECT_PREFIX
from payments_api.projects.payee_projects import SESSION_PREFIX as SESSION_PREFIX
from payments_api.projects.payee_projects import payee_project, project_session
from payments_api.projects.repository import DirectPaymentRepository, ProjectRepository
from payments_api.users.repository import UserRepository

PAYEE_ROLE = "payee"


@dataclass(frozen=True, slots=True)
class DirectTarget:
    """Where a direct payment goes, fixed when the payment is created."""

    payee_id: str
    project_id: int
    project_name: str
    session_id: int | None
    kind: str
    destination: str
    """The payee's connected account (``acct_...``)."""
    application_fee_amount: int
    """The platform's fee, captured now: a later change of the rate does not apply."""

    def reference(self) -> dict[str, Any]:
        """What the order keeps (``orders.reference``) to build the Checkout Session and
        to record the payment when Stripe confirms it."""
        return {
            "payee_id": self.payee_id,
            "project_id": self.project_id,
            "project_name": self.project_name,
            "session_id": self.session_id,
            "kind": self.kind,
            "destination": self.destination,
            "application_fee_amount": self.application_fee_amount,
        }


async def resolve_target(
    session: AsyncSession,
    *,
    payer_id: str,
    payee_id: str | None,
    project_id: str | None,
    session_id: str | None,
    kind: str,
    amount: int,
    currency: str,
    fee_bps: int,
) -> DirectTarget:
    """Check that ``payer_id`` may pay ``payee_id`` for the project (and session) now and
    return where the money goes. Raises the projects domain's problems otherwise."""
    if not payee_id:
        raise PayeeNotFound("A direct payment needs `payee_id`.")
    if payee_id == payer_id:
        raise SelfPayment("You cannot pay yourself.")
    payee = await UserRepository(session).get(payee_id)
    if payee is None or PAYEE_ROLE not in payee.roles:
        raise PayeeNotFound(f"No payee {payee_id!r}.")
    projects = ProjectRepository(session)
    project = await payee_project(projects, payee_id, project_id)
    if project.status != "active":
        raise ProjectArchived("The project is archived and takes no payments.")
    if currency != project.currency:
        raise CurrencyMismatch(
            f"Payments to this project are in {project.currency}.",
            project_currency=project.currency,
        )
    session_number: int | None = None
    if session_id is not None:
        window = await project_session(projects, project, session_id)
        session_number = window.id
        if window.status != "open":
            raise SessionClosed("The session is closed and takes no more payments.")
    account = await PayoutAccountRepository(session).get_by_user(payee_id)
    if (
        account is None
        or account.stripe_account_id is None
        or account.status != "enabled"
        or not account.charges_enabled
    ):
        # The payee's setup details are theirs: the payer only learns it is not ready.
        raise PayeeCannotReceivePayments(
            "The payee has not finished setting up payouts; try again later."
        )
    return DirectTarget(
        payee_id=payee_id,
        project_id=project.id,
        project_name=project.name,
        session_id=session_number,
        kind=kind,
        destination=account.stripe_account_id,
        application_fee_amount=basis_points_of(amount, fee_bps),
    )


def checkout_extras(order: Order) -> tuple[dict[str, str], dict[str, Any], str]:
    """Metadata, ``payment_intent_data`` additions and the line item's name of a direct
    payment's Checkout Session."""
    ref = order.reference
    metadata = {
        "payee_id": str(ref["payee_id"]),
        "project_id": public_id(PROJECT_PREFIX, int(ref["project_id"])),
        "kind": str(ref["kind"]),
    }
    if ref.get("session_id") is not None:
        metadata["session_id"] = public_id(SESSION_PREFIX, int(ref["session_id"]))
    intent_data: dict[str, Any] = {"transfer_data": {"destination": str(ref["destination"])}}
    fee = int(ref["application_fee_amount"])
    if fee > 0:  # Stripe refuses an application fee of zero; none is simply omitted
        intent_data["application_fee_amount"] = fee
    label = "Tip" if ref["kind"] == "tip" else "Request"
    return metadata, intent_data, f"{label}: {ref['project_name']}"[:250]


async def record_paid(
    session: AsyncSession,
    order: Order,
    *,
    payment_intent_id: str,
    amount: int,
    currency: str,
    paid_at: datetime | None = None,
) -> bool:
    """Record a confirmed direct payment once per PaymentIntent: the platform's fee in
    the ledger (cause key ``stripe:payment:{pi}``, as every pay-in), the payment and the
    payee's take (net of the fee) in the reporting tables. Returns False when it was
    recorded already."""
    ref = order.reference
    fee = int(ref["application_fee_amount"])
    if not 0 <= fee <= amount:
        raise ValueError(f"order {order.id}: fee {fee} does not fit the amount {amount}")
    paid_at = paid_at or utcnow()
    if fee > 0:
        # The gross went to the payee's account at Stripe; only the fee is the platform's.
        await ledger_service.LedgerService(session).post(
            ledger_service.NewTransaction(
                type="direct_payment_fee",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:payment:{payment_intent_id}",
                description=f"Application fee of direct payment ord_{order.id}",
                metadata={
                    "order_id": order.id,
                    "payment_intent": payment_intent_id,
                    "payee_id": ref["payee_id"],
                    "project_id": ref["project_id"],
                    "amount": amount,
                },
                postings=receive(
                    fee,
                    into=ledger_service.AccountRef.platform(AccountKind.platform_fees, currency),
                    out_of=ledger_service.AccountRef.platform(AccountKind.stripe_balance, currency),
                ),
            )
        )
    session_id = ref.get("session_id")
    inserted = await DirectPaymentRepository(session).insert(
        {
            "stripe_payment_intent_id": payment_intent_id,
            "order_id": order.id,
            "payer_id": order.user_id,
            "payee_id": ref["payee_id"],
            "project_id": int(ref["project_id"]),
            "session_id": int(session_id) if session_id is not None else None,
            "kind": ref["kind"],
            "amount": amount,
            "application_fee_amount": fee,
            "net_amount": amount - fee,
            "currency": currency,
            "stripe_account_id": ref["destination"],
            "paid_at": paid_at,
        }
    )
    if inserted is None:
        return False
    await earnings_service.EarningsService(session).record(
        earnings_service.NewEarning(
            payee_id=str(ref["payee_id"]),
            source=EarningSource.payment,
            source_id=payment_intent_id,
            amount=amount - fee,
            currency=currency,
            project_id=public_id(PROJECT_PREFIX, int(ref["project_id"])),
            session_id=public_id(SESSION_PREFIX, int(session_id)) if session_id else None,
            # No ledger transaction credited the payee: the money is on their account.
            earned_at=paid_at,
        )
    )
    return True


class DirectPurpose(ChosenAmountPurpose):
    """``direct``: a tip or paid request, a destination charge to the payee's account.
    A tip or pay-per-request is chosen by the customer like a top-up, within the same
    limits."""

    name = "direct"
    paid_event = EventType.order_paid
    chosen_as = "A direct payment"

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        body = request.body
        amount, currency = self.chosen_amount(request)
        target = await resolve_target(
            request.session,
            payer_id=request.user.id,
            payee_id=body.payee_id,
            project_id=body.project_id,
            session_id=body.session_id,
            kind=body.kind or "tip",
            amount=amount,
            currency=currency,
            fee_bps=request.settings.direct_application_fee_bps,
        )
        return self.pending_order(request, amount, currency, reference=target.reference())

    def checkout_line(self, order: Order) -> CheckoutLine:
        # A destination charge: Stripe moves the amount to the payee's connected account
        # and takes the application fee back for the platform.
        metadata, intent_data, name = checkout_extras(order)
        return CheckoutLine(name=name, metadata=metadata, intent_data=intent_data)

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        # The money is on the payee's connected account: the ledger gets only the
        # platform's fee, the payee's take goes to the reporting tables.
        await record_paid(
            payment.session,
            order,
            payment_intent_id=payment.payment_intent_id,
            amount=payment.amount,
            currency=payment.currency,
        )

    # Refunds (``direct_refunds``): the payee's share and the fee's share come back in
    # the payment's proportions.
    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        return RefundTerms()

    async def stripe_refund_options(
        self, session: AsyncSession, order: Order
    ) -> StripeRefundOptions:
        return await direct_refunds.stripe_options(session, order)

    async def on_refunded(self, booking: RefundBooking) -> None:
        await direct_refunds.settle(booking)

    async def on_refund_reverted(self, booking: RefundBooking) -> None:
        await direct_refunds.reverted(booking)

    async def on_refunded_to_wallet(self, booking: WalletRefundBooking) -> None:
        await direct_refunds.refund_to_wallet(booking)
