"""Property: whatever the price, fee rates, currency and path, the money held is
exactly what comes out (refund + fees + payee take), on the real ledger."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.schemas import EscrowCreate
from payments_api.escrow.service import EscrowService, minimum_price
from payments_api.ledger.kinds import AccountKind
from payments_api.money import MAX_MINOR_AMOUNT
from payments_api.settings import Settings
from tests.escrow.helpers import balance, fees, parties
from tests.factories import fund, ledger_invariants

AVAILABLE, ESCROW = AccountKind.available, AccountKind.escrow
PATHS = ["complete", "cancel_before_accept", "cancel_after_accept"]


class TestMoneyIsConserved:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        price=st.one_of(st.integers(1, 1_000), st.integers(1, MAX_MINOR_AMOUNT // 2)),
        platform_bps=st.integers(0, 10_000),
        service_bps=st.integers(0, 10_000),
        currency=st.sampled_from(["usd", "jpy", "kwd"]),
        path=st.sampled_from(PATHS),
        keep_fee=st.booleans(),
    )
    @example(1, 500, 2_000, "jpy", "complete", True)
    @example(1, 500, 2_000, "kwd", "cancel_after_accept", True)
    @example(MAX_MINOR_AMOUNT // 2, 10_000, 10_000, "usd", "complete", False)
    @example(10_001, 5_000, 5_000, "jpy", "cancel_after_accept", False)
    async def test_held_equals_refund_plus_fees_plus_take(
        self,
        session: AsyncSession,
        settings: Settings,
        price: int,
        platform_bps: int,
        service_bps: int,
        currency: str,
        path: str,
        keep_fee: bool,
    ) -> None:
        example_txn = await session.begin_nested()  # every example starts from the same state
        try:
            configured = settings.model_copy(
                update={
                    "escrow_platform_fee_bps": platform_bps,
                    "escrow_service_fee_bps": service_bps,
                    "escrow_keep_platform_fee_on_cancel": keep_fee,
                }
            )
            service = EscrowService(session, configured)
            # Below the minimum price the escrow is refused (tested in test_service); the
            # rounding is then checked from the smallest price the rates allow up.
            price = max(price, minimum_price(configured, currency))
            customer, payee = await parties(session, "prop")
            hold = price + (price * platform_bps * 2 + 10_000) // 20_000  # upper bound
            await fund(session, customer.id, hold, currency)
            fees_before = await fees(session, currency)

            escrow, _ = await service.create(
                customer,
                EscrowCreate(payee_id=payee.id, amount=price, currency=currency, reference="p"),
                idempotency_key=None,
            )
            held = await balance(session, customer.id, ESCROW, currency)
            assert held == escrow.hold_amount
            if path != "cancel_before_accept":
                await service.accept(escrow.id, payee)
            if path == "complete":
                await service.complete(escrow.id, customer)
            else:
                await service.cancel(escrow.id, customer)

            refunded = await balance(session, customer.id, AVAILABLE, currency) - (hold - held)
            fee_total = await fees(session, currency) - fees_before
            take = await balance(session, payee.id, AVAILABLE, currency)
            assert await balance(session, customer.id, ESCROW, currency) == 0
            assert held == refunded + fee_total + take
            expected = {
                "complete": (0, escrow.platform_fee_amount + escrow.service_fee_amount),
                "cancel_before_accept": (held, 0),
                "cancel_after_accept": (
                    (price, escrow.platform_fee_amount) if keep_fee else (held, 0)
                ),
            }[path]
            assert (refunded, fee_total) == expected
            assert take == (escrow.payee_amount if path == "complete" else 0)
            assert await ledger_invariants(session) == []
        finally:
            await example_txn.rollback()
