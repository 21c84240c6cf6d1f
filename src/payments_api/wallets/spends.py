"""Paying catalog orders and direct payments from the wallet (``source: "wallet"``).

The way a wallet-funded escrow is paid, in one database transaction (the route's): the
order is written ``succeeded`` with channel ``wallet`` and the money moves in the ledger
under the cause key ``wallet_payment:{order_id}``, with the customer as the initiator,
so the ledger refuses a frozen wallet (``wallet_frozen``) and a short balance
(``insufficient_funds``, nothing written, the balance never below zero). The client's
Idempotency-Key finds the order again (``orders (user_id, idempotency_key)``); a retry
with another body is ``idempotency_key_reused``. Amounts are within the currency's
``debit`` limits (a wallet spend).

- ``order``: available -> ``sales``; a price that grants credit then credits the buyer
  (``order:{id}:credit``, as a card-paid order does).
- ``direct``: the same fee rule as a card-paid direct payment (the application fee,
  ``PAYMENTS_DIRECT_APPLICATION_FEE_BPS``, captured now): available -> the payee's
  available (the take) and ``platform_fees`` (the fee). The payee's take is in their
  wallet (withdrawable like an escrow's), not on their connected account; the payment
  counts in the project's and session's figures and the payee's earnings.

No Stripe call is made; refunds of these orders go back to the wallet
(``refunds.to_wallet``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal
from payments_api.earnings import service as earnings_service
from payments_api.earnings.models import EarningSource
from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountOutOfRange, check_limits
from payments_api.kit.clock import utcnow
from payments_api.kit.idempotency import add_once
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import move, split
from payments_api.orders.catalog import grant_credit, priced_order
from payments_api.orders.errors import KEY_USED_FOR_ANOTHER_PAYMENT, PriceNotFound
from payments_api.orders.models import Order
from payments_api.orders.reads import ORDER_PREFIX, order_read, tell_owner
from payments_api.orders.repository import OrderRepository
from payments_api.orders.schemas import OrderRead, WalletPaymentCreate
from payments_api.problems import Forbidden
from payments_api.projects import direct as direct_payments
from payments_api.projects.models import DirectPayment
from payments_api.settings import Settings
from payments_api.users.keyed_requests import KeyedRequest
from payments_api.users.models import User


def _wallet_payment(
    order: Order,
    user: User,
    *,
    type: str,
    description: str,
    metadata: dict[str, Any],
    postings: Sequence[ledger_service.PostingSpec],
) -> ledger_service.NewTransaction:
    """The ledger transaction that pays ``order`` from ``user``'s wallet: once per order
    (``wallet_payment:{order_id}``), with the user as the initiator, so the ledger
    refuses a frozen wallet."""
    return ledger_service.NewTransaction(
        type=type,
        cause_type=CauseType.system,
        cause_key=f"wallet_payment:{order.id}",
        description=description,
        metadata=metadata,
        postings=postings,
        initiated_by=user.id,
    )


class WalletPayments:
    def __init__(self, session: AsyncSession, settings: Settings, principal: Principal) -> None:
        self.session = session
        self.settings = settings
        self.principal = principal
        self.ledger = ledger_service.LedgerService(session)

    def _check_limits(self, amount: int, currency: str) -> None:
        check_limits(self.settings, "debit", amount, currency, what="Wallet payments")

    async def pay(self, body: WalletPaymentCreate, idempotency_key: str) -> tuple[OrderRead, bool]:
        """Pay from the wallet; returns the order and whether it was a replay."""
        if not self.principal.has_role("customer"):
            raise Forbidden("Paying from the wallet needs the customer role.")
        if body.purpose == "direct":
            if body.amount is None or body.currency is None:
                raise AmountOutOfRange("A direct payment needs `amount` and `currency`.")
            self._check_limits(body.amount, body.currency)
        elif body.price is None:
            raise PriceNotFound("An order needs `price` (a lookup key).")
        keyed = KeyedRequest.of(body, idempotency_key, KEY_USED_FOR_ANOTHER_PAYMENT)
        orders = OrderRepository(self.session)
        user, existing = await keyed.caller_and_earlier(
            self.session, self.principal, orders.by_idempotency_key
        )
        if existing is not None:
            return order_read(existing), True
        now = utcnow()
        if body.purpose == "order":
            order = await priced_order(
                self.session,
                user,
                price_key=body.price,
                quantity=body.quantity,
                discount_code=body.discount_code,
                now=now,
                channel="wallet",
            )
            self._check_limits(order.amount, order.currency)
            target = None
        else:
            assert body.amount is not None  # noqa: S101 - checked above
            assert body.currency is not None  # noqa: S101
            target = await direct_payments.resolve_target(
                self.session,
                payer_id=user.id,
                payee_id=body.payee_id,
                project_id=body.project_id,
                session_id=body.session_id,
                kind=body.kind or "tip",
                amount=body.amount,
                currency=body.currency,
                fee_bps=self.settings.direct_application_fee_bps,
            )
            order = Order(
                user_id=user.id,
                purpose="direct",
                channel="wallet",
                amount=body.amount,
                currency=body.currency,
                reference=target.reference(),
            )
        order.status = "succeeded"
        order.succeeded_at = now
        order.updated_at = now
        order.idempotency_key = idempotency_key
        order.request_fingerprint = keyed.fingerprint
        twin = await add_once(
            self.session, order, lambda: orders.by_idempotency_key(user.id, idempotency_key)
        )
        if twin is not order:
            # A concurrent twin with the same key won (and moved the money once).
            return order_read(twin), True
        if target is None:
            await self._pay_order(order, user)
        else:
            await self._pay_direct(order, user, target)
        await tell_owner(self.session, order, EventType.order_paid, "paid")
        return order_read(order), False

    async def _pay_order(self, order: Order, user: User) -> None:
        currency = order.currency
        await self.ledger.post(
            _wallet_payment(
                order,
                user,
                type="wallet_order_payment",
                description=f"Payment {public_id(ORDER_PREFIX, order.id)} from the wallet",
                metadata={"order_id": order.id, "price": order.reference.get("price")},
                postings=move(
                    order.amount,
                    out_of=ledger_service.AccountRef.user(user.id, AccountKind.available, currency),
                    into=ledger_service.AccountRef.platform(AccountKind.sales, currency),
                ),
            )
        )
        await grant_credit(self.ledger, order)

    async def _pay_direct(
        self, order: Order, user: User, target: direct_payments.DirectTarget
    ) -> None:
        currency, amount = order.currency, order.amount
        fee = target.application_fee_amount
        # The payee's share and the platform's fee (none when the fee is nothing).
        postings = split(
            amount,
            out_of=ledger_service.AccountRef.user(user.id, AccountKind.available, currency),
            into=[
                (
                    ledger_service.AccountRef.user(
                        target.payee_id, AccountKind.available, currency
                    ),
                    amount - fee,
                ),
                (ledger_service.AccountRef.platform(AccountKind.platform_fees, currency), fee),
            ],
        )
        result = await self.ledger.post(
            _wallet_payment(
                order,
                user,
                type="wallet_direct_payment",
                description=f"Direct payment {public_id(ORDER_PREFIX, order.id)} from the wallet",
                metadata={
                    "order_id": order.id,
                    "payee_id": target.payee_id,
                    "project_id": target.project_id,
                    "amount": amount,
                    "application_fee_amount": fee,
                },
                postings=postings,
            )
        )
        now = order.succeeded_at or utcnow()
        self.session.add(
            DirectPayment(
                stripe_payment_intent_id=None,
                funding="wallet",
                order_id=order.id,
                payer_id=user.id,
                payee_id=target.payee_id,
                project_id=target.project_id,
                session_id=target.session_id,
                kind=target.kind,
                amount=amount,
                application_fee_amount=fee,
                net_amount=amount - fee,
                currency=currency,
                stripe_account_id=target.destination,
                paid_at=now,
            )
        )
        await self.session.flush()
        await earnings_service.EarningsService(self.session).record(
            earnings_service.NewEarning(
                payee_id=target.payee_id,
                source=EarningSource.payment,
                source_id=public_id(ORDER_PREFIX, order.id),
                amount=amount - fee,
                currency=currency,
                project_id=public_id(direct_payments.PROJECT_PREFIX, target.project_id),
                session_id=(
                    public_id(direct_payments.SESSION_PREFIX, target.session_id)
                    if target.session_id is not None
                    else None
                ),
                ledger_transaction_id=result.transaction.id,
                earned_at=now,
            )
        )
