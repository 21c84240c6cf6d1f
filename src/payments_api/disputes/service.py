"""Card disputes: what Stripe takes and gives back, mirrored in the ledger.

When a chargeback opens, Stripe withdraws the disputed amount plus its dispute fee (W)
from the platform's balance; inquiries (``warning_*`` statuses) withdraw nothing. The
ledger mirrors it in two transactions:

- Stripe's side, cause ``stripe:dispute:{dp}:funds_withdrawn``: ``stripe_balance +W``,
  ``disputes -W`` (the platform's money at Stripe went down);
- the customer's side, for top-ups, cause ``dispute:{dp}:debit``: ``available -W``,
  ``disputes +W``, posted with ``allow_negative_available`` — the only posting of the
  service that may drive an available balance below zero — and the wallet is frozen
  (withdrawals refused with ``wallet_frozen``).

Won (funds reinstated, R): Stripe's side ``stripe:dispute:{dp}:funds_reinstated``
(``stripe_balance -R``, ``disputes +R``) and the customer made whole,
``dispute:{dp}:credit`` (``disputes -W``, ``available +W``); a dispute fee Stripe keeps
stays in ``disputes`` as the platform's cost. The wallet is unfrozen unless something
else holds it (an admin's freeze, another open or lost dispute, a negative balance).
Lost: final; nothing more moves, the part of W the customer's wallet does not cover is
recorded as the platform's loss, and the wallet stays frozen until an admin decides.
Catalog orders credited the platform's sales, not a wallet: their disputes stop at
Stripe's side (the loss stays in ``disputes``). A subscription invoice's charge is the
subscriber's dispute and takes back the plan credit the invoice granted
(:mod:`payments_api.disputes.invoices`).

Every event carries the dispute as it is now, with all its balance transactions: the
handler converges the ledger to that (withdrawn once, reinstated once), so duplicated or
out-of-order events are harmless. Status changes are validated: an event older than the
last one applied is skipped; an illegal transition (from a closed status to another
one, or a chargeback back to an inquiry) is logged and acknowledged, never retried.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.wallet_freezes import set_wallet_frozen
from payments_api.disputes import metrics
from payments_api.disputes.errors import DisputeNotFound
from payments_api.disputes.invoices import InvoiceDisputes
from payments_api.disputes.models import CLOSED_STATUSES, DISPUTE_STATUSES, Dispute
from payments_api.disputes.repository import DisputeRepository
from payments_api.disputes.schemas import DisputeList, DisputeRead
from payments_api.disputes.wallet_entries import WalletDebit, wallet_credit, wallet_debit
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.kit.stripe_settlement import StripeSettlement
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import move
from payments_api.orders.models import Order
from payments_api.orders.repository import OrderRepository
from payments_api.stripe.objects import Dispute as StripeDispute
from payments_api.stripe.objects import DisputeFunds
from payments_api.users.repository import UserRepository
from payments_api.webhooks.registry import StripeEvent

log = logging.getLogger(__name__)

DISPUTE_PREFIX = "dsp"
SYSTEM_ACTOR = "system:stripe"
FREEZE_REASON_PREFIX = "dispute:"
_UNFREEZING = frozenset({"won", "warning_closed", "prevented"})


def transition_allowed(current: str | None, new: str) -> bool:
    """Whether a dispute may move from ``current`` to ``new`` (same status: yes)."""
    if current is None or current == new:
        return True
    if current in CLOSED_STATUSES:
        return False  # closed is final
    if current.startswith("warning_"):
        return True  # an inquiry may escalate to a chargeback or close
    return not new.startswith("warning_")  # a chargeback never becomes an inquiry again


def dispute_read(dispute: Dispute) -> DisputeRead:
    return DisputeRead(
        id=public_id(DISPUTE_PREFIX, dispute.id),
        stripe_dispute_id=dispute.stripe_dispute_id,
        order_id=public_id("ord", dispute.order_id) if dispute.order_id else None,
        invoice_id=dispute.stripe_invoice_id,
        user_id=dispute.user_id,
        amount=dispute.amount,
        currency=dispute.currency,
        status=dispute.status,
        reason=dispute.reason,
        withdrawn_amount=dispute.withdrawn_amount,
        fee_amount=dispute.fee_amount,
        user_debited_amount=dispute.user_debited_amount,
        reinstated_amount=dispute.reinstated_amount,
        platform_loss_amount=dispute.platform_loss_amount,
        froze_wallet=dispute.froze_wallet,
        created_at=dispute.created_at,
        closed_at=dispute.closed_at,
    )


def _platform(kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.platform(kind, currency)


def funds_currency(dispute: Dispute, transactions: list[DisputeFunds]) -> str:
    """The currency Stripe moved the dispute's funds in (the dispute's when unsaid)."""
    return (transactions[0].currency or dispute.currency).lower()


STRIPE_FUNDS_STEPS: dict[str, tuple[str, AccountKind, AccountKind]] = {
    "funds_withdrawn": ("withdrew", AccountKind.disputes, AccountKind.stripe_balance),
    "funds_reinstated": ("reinstated", AccountKind.stripe_balance, AccountKind.disputes),
}
"""What each of Stripe's dispute steps did, and which way the money went (out of, into)."""


class DisputeSettlement(StripeSettlement):
    """Applies Stripe's dispute events: the only code that moves disputed money."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.disputes = DisputeRepository(self.session)
        self.orders = OrderRepository(self.session)
        self.users = UserRepository(self.session)
        self.ledger = ledger_service.LedgerService(self.session)
        self.invoices = InvoiceDisputes(self.session)

    async def apply(self, event: StripeEvent, data: StripeDispute) -> Dispute | None:
        """Converge our dispute and the ledger to ``data``, the dispute in ``event``."""
        status = data.status
        if status not in DISPUTE_STATUSES:
            log.warning("dispute %s: unknown status %r ignored", data.id, status)
            metrics.DISPUTE_EVENTS_SKIPPED.labels(reason="unknown_status").inc()
            return None
        dispute = await self.disputes.by_stripe_id(data.id, for_update=True)
        previous: str | None = None
        if dispute is None:
            dispute = await self._create(data)
        else:
            previous = dispute.status
        if dispute.last_event_created is not None and event.created < dispute.last_event_created:
            log.info("dispute %s: event %s is older than its state; skipped", data.id, event.id)
            metrics.DISPUTE_EVENTS_SKIPPED.labels(reason="stale").inc()
            return dispute
        if not transition_allowed(dispute.status, status):
            log.warning(
                "dispute %s: illegal transition %s -> %s (event %s %s) acknowledged, not applied",
                dispute.stripe_dispute_id,
                dispute.status,
                status,
                event.type,
                event.id,
            )
            metrics.DISPUTE_EVENTS_SKIPPED.labels(reason="illegal_transition").inc()
            return dispute

        withdrawals, reinstatements = await self._balance_transactions(data, event, status)
        if withdrawals and dispute.funds_withdrawn_at is None:
            await self._withdraw(dispute, withdrawals)
        if reinstatements and dispute.funds_withdrawn_at and dispute.funds_reinstated_at is None:
            await self._reinstate(dispute, reinstatements)

        now = self.now()
        dispute.status = status
        dispute.reason = data.reason or dispute.reason
        dispute.last_event_created = event.created
        dispute.updated_at = now
        if status in CLOSED_STATUSES and dispute.closed_at is None:
            dispute.closed_at = now
        if previous != status:
            metrics.DISPUTE_TRANSITIONS.labels(status=status).inc()
        if status == "lost" and dispute.platform_loss_amount is None:
            await self._record_loss(dispute)
        if status in _UNFREEZING or dispute.funds_reinstated_at is not None:
            await self._maybe_unfreeze(dispute)
        if previous is None:
            await self._emit(dispute, EventType.dispute_created)
        if status in CLOSED_STATUSES:
            await self._emit(dispute, EventType.dispute_closed)
        return dispute

    async def _emit(self, dispute: Dispute, type: EventType) -> None:
        # The key names the change once: a redelivered or reordered Stripe event for a
        # dispute already created or closed writes nothing.
        await emit(
            self.session,
            type,
            dispute_read(dispute),
            change_key=f"dispute:{dispute.id}:{type.value.partition('.')[2]}",
            user_ids=[dispute.user_id],
        )

    async def _create(self, data: StripeDispute) -> Dispute:
        payment_intent, charge_id = data.payment_intent, data.charge
        if payment_intent is None and charge_id is not None:
            payment_intent = (await self.stripe.retrieve_charge(charge_id)).payment_intent
        order: Order | None = None
        if payment_intent is not None:
            order = await self.orders.by_stripe_ids(order_id=None, payment_intent_id=payment_intent)
        invoice = None
        if order is None:
            invoice = await self.invoices.invoice_of(
                payment_intent=payment_intent, charge=charge_id
            )
        if order is None and invoice is None:
            log.warning(
                "dispute %s on charge %s is not about one of our orders or invoices; only "
                "Stripe's side is recorded",
                data.id,
                charge_id,
            )
        if invoice is not None:
            user_id: str | None = invoice.user_id
        else:
            user_id = order.user_id if order else None
        await self.disputes.insert_if_new(
            {
                "stripe_dispute_id": data.id,
                "stripe_charge_id": charge_id,
                "stripe_payment_intent_id": payment_intent,
                "order_id": order.id if order else None,
                "stripe_invoice_id": invoice.stripe_invoice_id if invoice else None,
                "user_id": user_id,
                "amount": data.amount,
                "currency": data.currency.lower(),
                "status": data.status,
                "reason": data.reason,
            }
        )
        dispute = await self.disputes.by_stripe_id(data.id, for_update=True)
        if dispute is None:  # pragma: no cover - inserted or found just above
            raise RuntimeError(f"dispute {data.id} vanished")
        return dispute

    async def _balance_transactions(
        self, data: StripeDispute, event: StripeEvent, status: str
    ) -> tuple[list[DisputeFunds], list[DisputeFunds]]:
        """The dispute's withdrawals and reinstatements, from the event or from Stripe."""

        def split(dispute: StripeDispute) -> tuple[list[DisputeFunds], list[DisputeFunds]]:
            found = dispute.balance_transactions
            return [t for t in found if t.amount < 0], [t for t in found if t.amount > 0]

        withdrawals, reinstatements = split(data)
        chargeback = not status.startswith("warning_")
        expects_withdrawal = event.type == "charge.dispute.funds_withdrawn" or (
            chargeback and event.type == "charge.dispute.created"
        )
        expects_reinstatement = event.type == "charge.dispute.funds_reinstated"
        if (expects_withdrawal and not withdrawals) or (
            expects_reinstatement and not reinstatements
        ):
            withdrawals, reinstatements = split(await self.stripe.retrieve_dispute(data.id))
        amount, currency = data.amount, data.currency.lower()
        if expects_withdrawal and not withdrawals:
            log.warning("dispute %s: no balance transaction; withdrawing the amount", data.id)
            withdrawals = [DisputeFunds(amount=-amount, currency=currency)]
        if expects_reinstatement and not reinstatements:
            log.warning("dispute %s: no balance transaction; reinstating the amount", data.id)
            reinstatements = [DisputeFunds(amount=amount, currency=currency)]
        return withdrawals, reinstatements

    async def _withdraw(self, dispute: Dispute, withdrawals: list[DisputeFunds]) -> None:
        if dispute.user_id is not None:
            # The user row before the balances, as withdrawals lock them: no lock cycle.
            await self.users.get(dispute.user_id, for_update=True)
        currency = funds_currency(dispute, withdrawals)
        disputed = -sum(t.amount for t in withdrawals)
        fee = sum(t.fee for t in withdrawals)
        total = disputed + fee
        await self._post_stripe_funds(dispute, "funds_withdrawn", withdrawals, total, fee=fee)
        now = self.now()
        dispute.withdrawn_amount, dispute.fee_amount, dispute.funds_withdrawn_at = total, fee, now
        metrics.DISPUTE_FUNDS.labels(direction="withdrawn", currency=currency).inc(total)
        order = await self.orders.get(dispute.order_id) if dispute.order_id else None
        debit: WalletDebit | None = None
        if order is not None and order.purpose == "topup" and order.currency == currency:
            description = f"Card dispute on order ord_{order.id}"
            debit = WalletDebit(order.user_id, total, description, {"order_id": order.id})
        elif dispute.stripe_invoice_id is not None:
            debit = await self.invoices.credit_to_take_back(dispute, currency)
        if debit is not None:
            await self.ledger.post(wallet_debit(dispute, debit, currency))
            dispute.user_debited_amount = debit.amount
        if dispute.user_id is not None:
            await self._freeze(dispute)

    async def _reinstate(self, dispute: Dispute, reinstatements: list[DisputeFunds]) -> None:
        if dispute.user_id is not None:
            await self.users.get(dispute.user_id, for_update=True)  # same order as withdrawals
        currency = funds_currency(dispute, reinstatements)
        # net: the amount given back, plus any dispute fee returned (a negative fee).
        returned = sum(t.amount - t.fee if t.net is None else t.net for t in reinstatements)
        await self._post_stripe_funds(dispute, "funds_reinstated", reinstatements, returned)
        if dispute.user_debited_amount and dispute.user_id is not None:
            debited = dispute.user_debited_amount
            await self.ledger.post(
                wallet_credit(dispute, user_id=dispute.user_id, amount=debited, currency=currency)
            )
        dispute.reinstated_amount, dispute.funds_reinstated_at = returned, self.now()
        metrics.DISPUTE_FUNDS.labels(direction="reinstated", currency=currency).inc(returned)

    async def _post_stripe_funds(
        self,
        dispute: Dispute,
        step: Literal["funds_withdrawn", "funds_reinstated"],
        transactions: list[DisputeFunds],
        amount: int,
        *,
        fee: int | None = None,
    ) -> None:
        """What Stripe's balance transactions of the dispute moved, between the platform's
        Stripe balance and its disputes account (which way, the ``step`` says): once per
        dispute and ``step``."""
        verb, out_of, into = STRIPE_FUNDS_STEPS[step]
        currency = funds_currency(dispute, transactions)
        dp = dispute.stripe_dispute_id
        metadata: dict[str, Any] = {"dispute_id": dispute.id, "dispute": dp}
        if fee is not None:
            metadata["fee"] = fee
        metadata["balance_transactions"] = [t.id for t in transactions]
        await self.ledger.post(
            ledger_service.NewTransaction(
                type=f"dispute_{step}",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:dispute:{dp}:{step}",
                description=f"Stripe {verb} disputed {dispute.stripe_charge_id or dp}",
                metadata=metadata,
                postings=move(
                    amount, out_of=_platform(out_of, currency), into=_platform(into, currency)
                ),
            )
        )

    async def _record_loss(self, dispute: Dispute) -> None:
        """Lost is final: the platform's loss is what Stripe withdrew less what the
        customer's wallet covered (all of it for a top-up, the plan credit for an invoice)."""
        loss = dispute.withdrawn_amount
        if dispute.user_debited_amount and dispute.user_id is not None:
            available = await self.ledger.balance_of(
                ledger_service.AccountRef.user(
                    dispute.user_id, AccountKind.available, dispute.currency
                )
            )
            uncovered = min(dispute.user_debited_amount, max(0, -available))
            loss = dispute.withdrawn_amount - dispute.user_debited_amount + uncovered
        dispute.platform_loss_amount = loss
        log.warning(
            "dispute %s lost: %s %s minor units not covered by the customer",
            dispute.stripe_dispute_id,
            loss,
            dispute.currency,
        )

    async def _freeze(self, dispute: Dispute) -> None:
        assert dispute.user_id is not None  # noqa: S101 - checked by the caller
        user = await self.users.get(dispute.user_id, for_update=True)
        if user is None or user.frozen:
            return  # already frozen (an admin or another dispute): leave its reason
        dispute.froze_wallet = True
        await set_wallet_frozen(
            self.session,
            user,
            frozen=True,
            frozen_reason=f"{FREEZE_REASON_PREFIX}{dispute.stripe_dispute_id}",
            actor_id=SYSTEM_ACTOR,
            reason=f"Card dispute {dispute.stripe_dispute_id} opened",
            request_id=None,
            now=self.now(),
        )

    async def _maybe_unfreeze(self, dispute: Dispute) -> None:
        if dispute.user_id is None:
            return
        user = await self.users.get(dispute.user_id, for_update=True)
        if user is None or not user.frozen:
            return
        if not (user.frozen_reason or "").startswith(FREEZE_REASON_PREFIX):
            return  # frozen by an admin: only an admin unfreezes it
        if await self.disputes.holding_wallet(user.id, besides=dispute.id):
            return
        balances = await self.ledger.repository.user_balances(user.id)
        if any(kind == AccountKind.available and amount < 0 for _c, kind, amount in balances):
            return  # still owes money
        await set_wallet_frozen(
            self.session,
            user,
            frozen=False,
            actor_id=SYSTEM_ACTOR,
            reason=f"Card dispute {dispute.stripe_dispute_id} {dispute.status}",
            request_id=None,
            now=self.now(),
        )


class DisputeQueries:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = DisputeRepository(session)

    async def get(self, dispute_id: str) -> DisputeRead:
        number = parse_public_id(DISPUTE_PREFIX, dispute_id)
        dispute = await self.repository.get(number) if number is not None else None
        if dispute is None:
            raise DisputeNotFound()
        return dispute_read(dispute)

    async def list(
        self, *, limit: int, starting_after: str | None, status: str | None, user_id: str | None
    ) -> DisputeList:
        rows = await self.repository.page(
            limit=limit + 1,
            before_id=parse_cursor(DISPUTE_PREFIX, starting_after),
            status=status,
            user_id=user_id,
        )
        return DisputeList(data=[dispute_read(d) for d in rows[:limit]], has_more=len(rows) > limit)
