"""Catalog orders (purpose ``order``): prices, discount codes, and what a paid catalog
order means (revenue in ``sales``, less the wallet credit its price grants). A refund
gives the revenue back out of ``sales``; the credit it takes back is held from the
buyer's wallet until Stripe answers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal
from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import move
from payments_api.money import basis_points_of, charge_step
from payments_api.orders.confirmation import post_payment
from payments_api.orders.errors import (
    DiscountCodeExists,
    DiscountCodeInvalid,
    PriceExists,
    PriceNotFound,
)
from payments_api.orders.models import DiscountCode, Order, Price
from payments_api.orders.purposes import (
    BasePurpose,
    CheckoutLine,
    CheckoutRequest,
    PaidPayment,
    RefundBooking,
    RefundTerms,
)
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.orders.repository import CatalogRepository
from payments_api.orders.schemas import (
    CheckoutSessionCreate,
    DiscountCodeCreate,
    DiscountCodeRead,
    PriceCreate,
    PriceRead,
)
from payments_api.settings import Settings
from payments_api.users.models import User


async def priced_order(
    session: AsyncSession,
    user: User,
    *,
    price_key: str | None,
    quantity: int,
    discount_code: str | None,
    now: datetime,
    channel: str = "checkout_session",
) -> Order:
    """A pending catalog order priced on the server (the client never sends the price),
    with its discount redeemed and the wallet credit it will grant fixed now."""
    catalog = CatalogRepository(session)
    price = await catalog.active_price(price_key or "")
    if price is None:
        raise PriceNotFound(f"No active price {price_key!r}.")
    gross = price.unit_amount * quantity
    discount_amount, discount_id = 0, None
    if discount_code:
        discount = await catalog.redeem_discount(discount_code, now)
        if discount is None or (
            discount.currency is not None and discount.currency != price.currency
        ):
            raise DiscountCodeInvalid(f"The code {discount_code!r} cannot be used.")
        discount_id = discount.id
        discount_amount = (
            basis_points_of(gross, discount.percent_off_bps)
            if discount.percent_off_bps is not None
            else min(discount.amount_off or 0, gross)
        )
        # Stripe's steps (isk whole krónur, three-decimal currencies tens): prices
        # are on the step, so a discount rounded down to it keeps the total on it.
        discount_amount -= discount_amount % charge_step(price.currency)
    if gross - discount_amount <= 0:
        raise DiscountCodeInvalid("The discount leaves nothing to pay.")
    return Order(
        user_id=user.id,
        purpose="order",
        channel=channel,
        status="pending",
        amount=gross - discount_amount,
        currency=price.currency,
        price_id=price.id,
        quantity=quantity,
        discount_code_id=discount_id,
        discount_amount=discount_amount,
        reference={"price": price.lookup_key},
        granted_credit_amount=(price.grants_credit or 0) * quantity,
    )


async def grant_credit(
    ledger: ledger_service.LedgerService, order: Order
) -> ledger_service.PostResult | None:
    """A paid catalog order whose price grants wallet credit credits the buyer's
    available balance by it, out of the sale (``order:{id}:credit``, once). The sale's
    own transaction booked the whole amount to ``sales``; what the platform keeps as
    revenue is the amount less the credit it owes the buyer."""
    if not order.granted_credit_amount:
        return None
    return await ledger.post(
        ledger_service.NewTransaction(
            type="order_credit",
            cause_type=CauseType.system,
            cause_key=f"order:{order.id}:credit",
            description=f"Wallet credit granted by {public_id(ORDER_PREFIX, order.id)}",
            metadata={"order_id": order.id, "price": order.reference.get("price")},
            postings=move(
                order.granted_credit_amount,
                out_of=ledger_service.AccountRef.platform(AccountKind.sales, order.currency),
                into=ledger_service.AccountRef.user(
                    order.user_id, AccountKind.available, order.currency
                ),
            ),
        )
    )


class CatalogService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = CatalogRepository(session)

    @staticmethod
    def price_read(price: Price) -> PriceRead:
        return PriceRead.model_validate(price, from_attributes=True)

    async def create_price(self, body: PriceCreate) -> PriceRead:
        step = charge_step(body.currency)
        AmountNotInSteps.check(body.unit_amount, body.currency, step, "Prices", field="unit_amount")
        if body.grants_credit is not None:
            # The credit becomes wallet money, which leaves only through Stripe (refunds
            # to the card, transfers): off Stripe's steps it would leave dust no charge
            # refund can return, so it follows the same step as the price itself.
            AmountNotInSteps.check(
                body.grants_credit,
                body.currency,
                step,
                "Wallet credit (`grants_credit`)",
                field="grants_credit",
            )
        if await self.repository.price_by_key(body.lookup_key) is not None:
            raise PriceExists()
        price = Price(**body.model_dump(), active=True)
        self.session.add(price)
        await self.session.flush()
        return self.price_read(price)

    async def set_price_active(self, lookup_key: str, active: bool) -> PriceRead:
        price = await self.repository.price_by_key(lookup_key)
        if price is None:
            raise PriceNotFound(status=404)
        price.active = active
        await self.session.flush()
        return self.price_read(price)

    async def list_prices(self, *, active_only: bool) -> list[PriceRead]:
        return [
            self.price_read(p)
            for p in await self.repository.prices()
            if p.active or not active_only
        ]

    async def create_discount(self, body: DiscountCodeCreate) -> DiscountCodeRead:
        if (body.percent_off_bps is None) == (body.amount_off is None):
            raise DiscountCodeInvalid("Give exactly one of percent_off_bps or amount_off.")
        if (body.amount_off is None) != (body.currency is None):
            raise DiscountCodeInvalid("amount_off needs a currency (and only it does).")
        if body.amount_off is not None and body.currency is not None:
            AmountNotInSteps.check(
                body.amount_off, body.currency, charge_step(body.currency), "Discounts"
            )
        if await self.repository.discount_by_code(body.code) is not None:
            raise DiscountCodeExists()
        discount = DiscountCode(**body.model_dump(), active=True, redemptions=0)
        self.session.add(discount)
        await self.session.flush()
        return DiscountCodeRead.model_validate(discount, from_attributes=True)


class CatalogPurpose(BasePurpose):
    """``order``: a catalog item bought through Checkout, priced on the server."""

    name = "order"
    paid_event = EventType.order_paid

    def check_checkout(
        self, body: CheckoutSessionCreate, principal: Principal, settings: Settings
    ) -> None:
        if body.price is None:
            raise PriceNotFound("An order needs `price` (a lookup key).")

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        body = request.body
        return await priced_order(
            request.session,
            request.user,
            price_key=body.price,
            quantity=body.quantity,
            discount_code=body.discount_code,
            now=request.now,
        )

    def checkout_line(self, order: Order) -> CheckoutLine:
        return CheckoutLine(name=str(order.reference.get("price")))

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        """The whole amount is revenue in ``sales``; the credit the price grants then
        moves from ``sales`` to the buyer's wallet."""
        await post_payment(
            payment,
            order,
            destination=ledger_service.AccountRef.platform(AccountKind.sales, order.currency),
            transaction_type="order_payment",
        )
        await grant_credit(payment.ledger, order)

    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        return RefundTerms()

    async def on_refunded(self, booking: RefundBooking) -> None:
        await booking.settle_from_sales()
