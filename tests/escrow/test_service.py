"""EscrowService directly: card funding (the pay-in webhook's entry point) and the
money of every path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.earnings.models import Earning
from payments_api.escrow.errors import (
    EscrowAmountTooLarge,
    EscrowInvalidTransition,
    EscrowNotFound,
    PayeeNotFound,
)
from payments_api.escrow.models import Escrow, EscrowFunding, EscrowStatus
from payments_api.escrow.schemas import EscrowCreate
from payments_api.escrow.service import EscrowService, FundingOutcome
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.idempotency import IdempotencyKeyReused
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.models import LedgerTransaction
from payments_api.money import MAX_MINOR_AMOUNT
from payments_api.settings import Settings
from tests.escrow.helpers import balance, fees, parties, written
from tests.factories import fund, ledger_invariants

AVAILABLE, ESCROW, STRIPE = AccountKind.available, AccountKind.escrow, AccountKind.stripe_balance
NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _offer(payee_id: str, amount: int = 10_000, currency: str = "usd") -> EscrowCreate:
    return EscrowCreate(payee_id=payee_id, amount=amount, currency=currency, reference="job-card")


class TestFundFromPayment:
    async def test_card_payment_lands_in_escrow_directly_once(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        customer, payee = await parties(session, "card")
        service = EscrowService(session, settings)
        escrow, _ = await service.create(
            customer, _offer(payee.id), idempotency_key=None, funding=EscrowFunding.card
        )
        assert escrow.status == EscrowStatus.awaiting_payment
        assert escrow.funded_at is None
        assert await balance(session, customer.id, ESCROW, "usd") == 0
        stripe_before = await balance(session, None, STRIPE, "usd")
        # not funded yet: the payee cannot accept
        with pytest.raises(EscrowInvalidTransition):
            async with session.begin_nested():
                await service.accept(escrow.id, payee)

        first = await service.fund_from_payment(
            escrow_id=escrow.id, payment_intent_id="pi_card_1", amount=10_500, currency="USD"
        )
        assert first.outcome is FundingOutcome.funded
        assert first.transaction is not None
        assert first.transaction.cause_key == "escrow_funding:pi_card_1"
        assert first.escrow.status == EscrowStatus.created
        assert first.escrow.payment_intent_id == "pi_card_1"
        assert await balance(session, customer.id, ESCROW, "usd") == 10_500
        # never through available: no posting on it at all
        assert await balance(session, customer.id, AVAILABLE, "usd") == 0
        assert {p.kind for p in first.transaction.postings} == {"escrow", "stripe_balance"}
        assert await balance(session, None, STRIPE, "usd") - stripe_before == -10_500

        before = await written(session)
        again = await service.fund_from_payment(
            escrow_id=escrow.id, payment_intent_id="pi_card_1", amount=10_500, currency="usd"
        )
        assert again.outcome is FundingOutcome.already_funded
        assert await written(session) == before
        assert await balance(session, customer.id, ESCROW, "usd") == 10_500

        # from here it behaves like a wallet escrow
        await service.accept(escrow.id, payee)
        await service.complete(escrow.id, customer)
        assert await balance(session, payee.id, AVAILABLE, "usd") == 8_000
        assert await balance(session, customer.id, ESCROW, "usd") == 0
        replay_after_completion = await service.fund_from_payment(
            escrow_id=escrow.id, payment_intent_id="pi_card_1", amount=10_500, currency="usd"
        )
        assert replay_after_completion.outcome is FundingOutcome.already_funded
        assert await ledger_invariants(session) == []

    @pytest.mark.parametrize(
        ("situation", "amount", "currency"),
        [
            ("cancelled_before_payment", 10_500, "usd"),
            ("funded_by_another_payment", 10_500, "usd"),
            ("wrong_amount", 10_000, "usd"),
            ("wrong_currency", 10_500, "eur"),
        ],
    )
    async def test_payment_the_escrow_cannot_take_goes_to_the_wallet_once(
        self,
        session: AsyncSession,
        settings: Settings,
        situation: str,
        amount: int,
        currency: str,
    ) -> None:
        customer, payee = await parties(session)
        service = EscrowService(session, settings)
        escrow, _ = await service.create(
            customer, _offer(payee.id), idempotency_key=None, funding=EscrowFunding.card
        )
        if situation == "cancelled_before_payment":
            await service.cancel(escrow.id, customer)
        if situation == "funded_by_another_payment":
            await service.fund_from_payment(
                escrow_id=escrow.id, payment_intent_id="pi_first", amount=10_500, currency="usd"
            )
        held_before = await balance(session, customer.id, ESCROW, "usd")
        status_before = escrow.status
        for _ in range(2):
            result = await service.fund_from_payment(
                escrow_id=escrow.id, payment_intent_id="pi_late", amount=amount, currency=currency
            )
            assert result.outcome is FundingOutcome.credited_to_wallet
        assert await balance(session, customer.id, AVAILABLE, currency) == amount
        assert await balance(session, customer.id, ESCROW, "usd") == held_before
        assert result.escrow.status == status_before
        assert (
            await session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.cause_key == "escrow_funding:pi_late")
            )
            == 1
        )
        assert await ledger_invariants(session) == []

    async def test_unknown_escrow(self, session: AsyncSession, settings: Settings) -> None:
        with pytest.raises(EscrowNotFound):
            await EscrowService(session, settings).fund_from_payment(
                escrow_id=987_654_321, payment_intent_id="pi_x", amount=1, currency="usd"
            )

    async def test_cancel_of_an_unpaid_card_escrow_moves_nothing(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        customer, payee = await parties(session)
        service = EscrowService(session, settings)
        escrow, _ = await service.create(
            customer, _offer(payee.id), idempotency_key=None, funding=EscrowFunding.card
        )
        before = await written(session)
        result = await service.cancel(escrow.id, customer, reason="changed my mind")
        assert result.changed
        assert result.escrow.status == EscrowStatus.cancelled
        assert await written(session) == before


class TestCreate:
    async def test_creation_key_makes_a_retry_return_the_same_escrow(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        """Independent of the Idempotency-Key middleware: the key is stored on the row."""
        customer, payee = await parties(session)
        await fund(session, customer.id, 30_000)
        service = EscrowService(session, settings)
        first, replayed = await service.create(customer, _offer(payee.id), idempotency_key="k1")
        assert not replayed
        before = await written(session)
        again, replayed = await service.create(customer, _offer(payee.id), idempotency_key="k1")
        assert replayed
        assert again.id == first.id
        assert await written(session) == before
        with pytest.raises(IdempotencyKeyReused):
            await service.create(customer, _offer(payee.id, 2_000), idempotency_key="k1")
        assert await written(session) == before
        # another customer's identical key is theirs alone
        other, _ = await parties(session)
        await fund(session, other.id, 10_500)
        theirs, replayed = await service.create(other, _offer(payee.id), idempotency_key="k1")
        assert not replayed
        assert theirs.id != first.id
        assert await balance(session, customer.id, AVAILABLE, "usd") == 30_000 - 10_500

    async def test_the_payee_is_checked_before_the_amount_and_the_creation_key(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        """The insert checks the payee itself; the answers keep their old order."""
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        service = EscrowService(session, settings)
        before = await written(session)
        with pytest.raises(PayeeNotFound):
            await service.create(customer, _offer("nobody-here"), idempotency_key="k1")
        with pytest.raises(PayeeNotFound):  # not "amount too large"
            await service.create(
                customer, _offer("nobody-here", MAX_MINOR_AMOUNT), idempotency_key=None
            )
        with pytest.raises(EscrowAmountTooLarge):
            await service.create(customer, _offer(payee.id, MAX_MINOR_AMOUNT), idempotency_key=None)
        assert await written(session) == before

        first, _ = await service.create(customer, _offer(payee.id), idempotency_key="k2")
        payee.roles = ["customer"]  # the payee role was withdrawn since
        await session.flush()
        with pytest.raises(PayeeNotFound):  # not a replay of the first escrow
            await service.create(customer, _offer(payee.id), idempotency_key="k2")
        payee.roles = ["payee"]
        await session.flush()
        again, replayed = await service.create(customer, _offer(payee.id), idempotency_key="k2")
        assert replayed
        assert again is first


class TestCardChargeSteps:
    async def test_an_isk_card_payment_must_be_whole_kronur(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        """Stripe charges isk in whole krónur (multiples of 100): the card is charged the
        hold, price plus platform fee, so a hold with a fraction is refused unwritten."""
        customer, payee = await parties(session)
        service = EscrowService(session, settings)
        before = await written(session)
        with pytest.raises(AmountNotInSteps) as refused:
            await service.create(  # 10.00 isk + 5% = 10.50: not chargeable
                customer,
                _offer(payee.id, 1_000, "isk"),
                idempotency_key=None,
                funding=EscrowFunding.card,
            )
        assert refused.value.extensions == {"step": 100}
        assert await written(session) == before
        escrow, _ = await service.create(  # 20.00 + 1.00
            customer,
            _offer(payee.id, 2_000, "isk"),
            idempotency_key=None,
            funding=EscrowFunding.card,
        )
        assert escrow.hold_amount == 2_100


class TestZeroParts:
    async def test_zero_fee_rates_post_no_zero_amounts(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        customer, payee = await parties(session)
        free = settings.model_copy(
            update={
                "escrow_platform_fee_bps": 0,
                "escrow_service_fee_bps": 0,
                "escrow_min_major": 0,
            }
        )
        await fund(session, customer.id, 1)
        service = EscrowService(session, free)
        fees_before = await fees(session, "usd")
        escrow, _ = await service.create(customer, _offer(payee.id, 1), idempotency_key=None)
        await service.accept(escrow.id, payee)
        await service.complete(escrow.id, customer)
        assert await balance(session, payee.id, AVAILABLE, "usd") == 1
        assert await fees(session, "usd") == fees_before
        assert await ledger_invariants(session) == []

    async def test_full_service_fee_leaves_a_zero_take(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        customer, payee = await parties(session)
        greedy = settings.model_copy(update={"escrow_service_fee_bps": 10_000})
        await fund(session, customer.id, 105)
        service = EscrowService(session, greedy)
        escrow, _ = await service.create(customer, _offer(payee.id, 100), idempotency_key=None)
        await service.accept(escrow.id, payee)
        await service.complete(escrow.id, customer)
        assert await balance(session, payee.id, AVAILABLE, "usd") == 0
        earning = await session.scalar(select(Earning).where(Earning.escrow_id == escrow.id))
        assert earning is not None
        assert earning.amount == 0
        assert await ledger_invariants(session) == []


class TestSessionCoherence:
    """Accept and complete are single UPDATE ... RETURNING statements outside the ORM's
    unit of work: the escrow they return must still be the session's one instance."""

    async def test_transitions_refresh_the_instance_the_session_holds(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        service = EscrowService(session, settings, now=lambda: NOON)
        escrow, _ = await service.create(customer, _offer(payee.id), idempotency_key=None)
        assert escrow in session

        accepted = await service.accept(escrow.id, payee)
        assert accepted.changed
        assert accepted.escrow is escrow
        assert escrow.status == EscrowStatus.accepted
        assert escrow.accepted_at == NOON
        assert escrow not in session.dirty

        completed = await service.complete(escrow.id, customer)
        assert completed.escrow is escrow
        assert (escrow.status, escrow.completed_by) == (EscrowStatus.completed, customer.id)
        # what the ORM reads back is what the statements wrote
        stored = await session.scalar(
            select(Escrow).where(Escrow.id == escrow.id).execution_options(populate_existing=True)
        )
        assert stored is escrow
        assert escrow.status == EscrowStatus.completed
        assert escrow.completed_at == NOON

        again = await service.complete(escrow.id, customer)
        assert not again.changed
        assert again.escrow is escrow

    async def test_a_transition_in_a_fresh_session_joins_it(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        async with sessionmaker() as first:
            customer, payee = await parties(first)
            await fund(first, customer.id, 10_500)
            escrow, _ = await EscrowService(first, settings).create(
                customer, _offer(payee.id), idempotency_key=None
            )
            await first.commit()
        async with sessionmaker() as second:
            result = await EscrowService(second, settings).accept(escrow.id, payee)
            assert result.escrow in second
            assert result.escrow is not escrow
            assert result.escrow.status == EscrowStatus.accepted
            assert result.escrow.hold_amount == escrow.hold_amount
            assert not second.dirty
