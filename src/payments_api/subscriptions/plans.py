"""Plans: Stripe Products and recurring Prices, mirrored locally.

``PlanSync`` pulls every product and recurring price (all pages) and writes them in one
transaction after the Stripe calls; ``product.*`` / ``price.*`` events keep them current.
Every row remembers the Unix time of the Stripe state it holds (``stripe_state_at``): an
event older than what is stored changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.clock import utcnow
from payments_api.kit.reads import read_of
from payments_api.money import CurrencyError, normalize_currency
from payments_api.stripe.billing_objects import Price, Product
from payments_api.stripe.gateway import StripeGateway
from payments_api.subscriptions.models import PlanPrice, PlanProduct
from payments_api.subscriptions.repository import PlanRepository
from payments_api.subscriptions.schemas import PlanList, PlanRead, PlanSyncResult

log = logging.getLogger(__name__)

INTERVALS = ("day", "week", "month", "year")


def monthly_credit_of(metadata: dict[str, Any] | None) -> int | None:
    """``metadata.monthly_credit``: a positive integer of minor units, else none."""
    raw = (metadata or {}).get("monthly_credit")
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 15 or int(text) <= 0:
        log.warning("ignoring price metadata monthly_credit=%r: not a positive integer", raw)
        return None
    return int(text)


def product_values(product: Product, state_at: int) -> dict[str, Any]:
    metadata = dict(product.metadata)
    return {
        "stripe_product_id": product.id,
        "name": (product.name or product.id)[:500],
        "description": product.description,
        "active": product.active and not product.deleted,
        "features": [feature.name for feature in product.marketing_features if feature.name],
        "metadata": metadata,
        "family": (metadata.get("family") or product.id)[:255],
        "stripe_state_at": state_at,
    }


def price_values(price: Price, state_at: int) -> dict[str, Any] | None:
    """A recurring, per-unit, fixed-amount price; anything else is not a plan."""
    recurring = price.recurring
    if (
        recurring is None
        or recurring.interval not in INTERVALS
        or price.unit_amount is None
        or price.product is None
    ):
        return None
    try:
        currency = normalize_currency(price.currency)
    except CurrencyError:
        log.warning("ignoring price %s in an unsupported currency", price.id)
        return None
    metadata = dict(price.metadata)
    return {
        "stripe_price_id": price.id,
        "stripe_product_id": price.product,
        "active": price.active and not price.deleted,
        "unit_amount": price.unit_amount,
        "currency": currency,
        "interval": recurring.interval,
        "interval_count": recurring.interval_count or 1,
        "trial_period_days": recurring.trial_period_days,
        "lookup_key": price.lookup_key,
        "nickname": price.nickname,
        "metadata": metadata,
        "monthly_credit": monthly_credit_of(metadata),
        "stripe_state_at": state_at,
    }


def plan_read(price: PlanPrice, product: PlanProduct) -> PlanRead:
    """The price's own columns (currency, interval, …) and its product's name, family and
    features."""
    return read_of(
        PlanRead,
        price,
        price=price.stripe_price_id,
        product=product.stripe_product_id,
        name=product.name,
        description=product.description,
        family=product.family,
        amount=price.unit_amount,
        features=list(product.features or []),
        metadata={**(product.metadata_ or {}), **(price.metadata_ or {})},
        active=price.active and product.active,
    )


class PlanCatalog:
    """Plans in the caller's transaction: reads and Stripe's product/price events."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = PlanRepository(session)

    async def list_active(self) -> PlanList:
        return PlanList(
            data=[plan_read(p, q) for p, q in await self.repository.plans(active_only=True)]
        )

    async def apply_product(self, product: Product, state_at: int) -> None:
        await self.repository.upsert_product(product_values(product, state_at))

    async def apply_price(self, price: Price, state_at: int, stripe: StripeGateway) -> None:
        values = price_values(price, state_at)
        if values is None:
            return  # a one-time or metered price: not a plan
        product_id = values["stripe_product_id"]
        if await self.repository.product(product_id) is None:
            # A price event before its product's: read the product (its state now).
            product = await stripe.retrieve_product(product_id)
            await self.apply_product(product, product.updated or state_at)
        await self.repository.upsert_price(values)


class PlanSync:
    """Pull every product and recurring price from Stripe (CLI and admin route)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], stripe: StripeGateway
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe

    async def run(self) -> PlanSyncResult:
        state_at = int(utcnow().timestamp())
        # Read first, with no transaction open; then write everything at once.
        products = await self.stripe.list_products()
        prices = await self.stripe.list_recurring_prices()
        async with self.sessionmaker.begin() as session:
            repository = PlanRepository(session)
            for product in products:
                await repository.upsert_product(product_values(product, state_at))
            written = 0
            for price in prices:
                values = price_values(price, state_at)
                if values is not None:
                    await repository.upsert_price(values)
                    written += 1
        log.info("plans synced", extra={"products": len(products), "prices": written})
        return PlanSyncResult(products=len(products), prices=written)
