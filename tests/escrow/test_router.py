"""The escrow routes, through HTTP on the real database (each test rolled back)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import Escrow
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.models import LedgerPosting, LedgerTransaction
from payments_api.money import MAX_MINOR_AMOUNT
from tests.escrow.helpers import (
    ESCROWS,
    balance,
    fees,
    headers,
    offer,
    own_project,
    parties,
    written,
)
from tests.factories import create_user, fund, ledger_invariants
from tests.helpers import auth

AVAILABLE, ESCROW = AccountKind.available, AccountKind.escrow
CUSTOMER, PAYEE, ADMIN = ["customer"], ["payee"], ["admin"]


async def _escrow_transactions(session: AsyncSession, escrow_id: str) -> dict[str, list[int]]:
    """cause key -> amounts of the postings of every ledger transaction of one escrow."""
    number = escrow_id.removeprefix("esc_")
    rows = await session.execute(
        select(LedgerTransaction.cause_key, LedgerPosting.amount)
        .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.cause_key.like(f"escrow:{number}:%"))
        .order_by(LedgerPosting.id)
    )
    found: dict[str, list[int]] = {}
    for cause_key, amount in rows:
        found.setdefault(cause_key, []).append(amount)
    return found


async def _create(
    client: httpx.AsyncClient, customer: str, payee: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        ESCROWS, json=offer(payee, **body), headers=headers(customer, CUSTOMER)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _post(
    client: httpx.AsyncClient, escrow_id: str, action: str, sub: str, roles: list[str], **kw: Any
) -> httpx.Response:
    return await client.post(f"{ESCROWS}/{escrow_id}/{action}", headers=headers(sub, roles), **kw)


class TestWorkedExample:
    async def test_spec_example_through_the_api(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session, "we")
        await fund(session, customer.id, 20_000, "usd")  # deposit 200.00
        fees_before = await fees(session, "usd")

        created = await _create(client, customer.id, payee.id, amount=10_000)  # offer 100.00
        assert created["status"] == "created"
        assert (created["platform_fee_amount"], created["hold_amount"]) == (500, 10_500)
        me = (await client.get("/api/v1/me/balance", headers=auth(customer.id, CUSTOMER))).json()
        assert me["balances"] == [
            {
                "currency": "usd",
                "available": 9_500,
                "escrow": 10_500,
                "withdrawing": 0,
                "refunding": 0,
                "pending": 0,
                "authorized": 0,
            }
        ]

        accepted = await _post(client, created["id"], "accept", payee.id, PAYEE)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted"
        assert await fees(session, "usd") - fees_before == 500

        completed = await _post(client, created["id"], "complete", customer.id, CUSTOMER)
        assert completed.status_code == 200, completed.text
        assert completed.json()["status"] == "completed"
        assert await fees(session, "usd") - fees_before == 2_500
        assert await balance(session, payee.id, AVAILABLE, "usd") == 8_000
        assert await balance(session, customer.id, AVAILABLE, "usd") == 9_500
        assert await balance(session, customer.id, ESCROW, "usd") == 0

        number = created["id"].removeprefix("esc_")
        transactions = await _escrow_transactions(session, created["id"])
        assert transactions == {
            f"escrow:{number}:hold": [-10_500, 10_500],
            f"escrow:{number}:accept": [-500, 500],
            f"escrow:{number}:complete": [-10_000, 2_000, 8_000],
        }
        assert all(sum(amounts) == 0 for amounts in transactions.values())
        assert await ledger_invariants(session) == []

    async def test_second_complete_is_a_noop_with_the_same_result(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        admin = await create_user(session, roles=ADMIN)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        await _post(client, created["id"], "accept", payee.id, PAYEE)
        first = await _post(client, created["id"], "complete", customer.id, CUSTOMER)
        before = await written(session)
        again = await _post(client, created["id"], "complete", customer.id, CUSTOMER)
        by_admin = await _post(client, created["id"], "complete", admin.id, ADMIN)
        assert again.status_code == by_admin.status_code == 200
        assert again.json() == first.json()
        assert by_admin.json()["status"] == "completed"
        assert await written(session) == before
        assert await balance(session, payee.id, AVAILABLE, "usd") == 8_000

    async def test_repeated_accept_and_cancel_are_noops(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 21_000)
        one = await _create(client, customer.id, payee.id)
        two = await _create(client, customer.id, payee.id)
        first_accept = await _post(client, one["id"], "accept", payee.id, PAYEE)
        first_cancel = await _post(client, two["id"], "cancel", customer.id, CUSTOMER)
        before = await written(session)
        again_accept = await _post(client, one["id"], "accept", payee.id, PAYEE)
        again_cancel = await _post(client, two["id"], "cancel", customer.id, CUSTOMER)
        assert again_accept.json() == first_accept.json()
        assert again_cancel.json() == first_cancel.json()
        assert await written(session) == before


class TestCancel:
    async def test_cancel_before_accept_returns_everything(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        fees_before = await fees(session, "usd")
        created = await _create(client, customer.id, payee.id)
        cancelled = await _post(
            client, created["id"], "cancel", customer.id, CUSTOMER, json={"reason": "no longer"}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["cancel_reason"] == "no longer"
        assert await balance(session, customer.id, AVAILABLE, "usd") == 10_500
        assert await balance(session, customer.id, ESCROW, "usd") == 0
        assert await fees(session, "usd") == fees_before

    async def test_payee_may_decline_before_accepting(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        declined = await _post(client, created["id"], "cancel", payee.id, PAYEE)
        assert declined.status_code == 200
        assert await balance(session, customer.id, AVAILABLE, "usd") == 10_500

    async def test_cancel_after_accept_keeps_the_platform_fee(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        fees_before = await fees(session, "usd")
        created = await _create(client, customer.id, payee.id)
        await _post(client, created["id"], "accept", payee.id, PAYEE)
        cancelled = await _post(client, created["id"], "cancel", customer.id, CUSTOMER)
        assert cancelled.status_code == 200, cancelled.text
        assert await balance(session, customer.id, AVAILABLE, "usd") == 10_000
        assert await balance(session, customer.id, ESCROW, "usd") == 0
        assert await fees(session, "usd") - fees_before == 500
        assert await balance(session, payee.id, AVAILABLE, "usd") == 0
        assert await ledger_invariants(session) == []

    async def test_admin_cancel_after_accept_refunds_fee_when_policy_says_so(
        self, app_factory: Any, session: AsyncSession
    ) -> None:
        app = app_factory(escrow_keep_platform_fee_on_cancel=False)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            customer, payee = await parties(session)
            admin = await create_user(session, roles=ADMIN)
            await fund(session, customer.id, 10_500)
            fees_before = await fees(session, "usd")
            created = await _create(client, customer.id, payee.id)
            assert created["keeps_platform_fee_on_cancel"] is False
            await _post(client, created["id"], "accept", payee.id, PAYEE)
            cancelled = await _post(client, created["id"], "cancel", admin.id, ADMIN)
        assert cancelled.status_code == 200, cancelled.text
        assert await balance(session, customer.id, AVAILABLE, "usd") == 10_500
        assert await fees(session, "usd") == fees_before
        assert await ledger_invariants(session) == []

    async def test_expected_status_refuses_a_cancel_after_a_concurrent_accept(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        await _post(client, created["id"], "accept", payee.id, PAYEE)
        before = await written(session)
        refused = await _post(
            client, created["id"], "cancel", customer.id, CUSTOMER,
            json={"expected_status": "created"},
        )  # fmt: skip
        assert refused.status_code == 409
        assert refused.json()["code"] == "escrow_invalid_transition"
        assert refused.json()["current_status"] == "accepted"
        assert await written(session) == before


class TestRatesAreCaptured:
    async def test_config_change_does_not_alter_open_escrows(
        self, app_factory: Any, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        fees_before = await fees(session, "usd")
        old = httpx.ASGITransport(app=app_factory(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=old, base_url="http://t") as client:
            created = await _create(client, customer.id, payee.id)
        new = httpx.ASGITransport(
            app=app_factory(escrow_platform_fee_bps=1_000, escrow_service_fee_bps=5_000),
            raise_app_exceptions=False,
        )
        async with httpx.AsyncClient(transport=new, base_url="http://t") as client:
            await _post(client, created["id"], "accept", payee.id, PAYEE)
            done = await _post(client, created["id"], "complete", customer.id, CUSTOMER)
        assert done.json()["status"] == "completed"
        assert await fees(session, "usd") - fees_before == 500 + 2_000
        assert await balance(session, payee.id, AVAILABLE, "usd") == 8_000


class TestCreateRejects:
    @pytest.mark.parametrize(
        ("case", "status", "code"),
        [
            ("self", 422, "escrow_self_offer"),
            ("unknown_payee", 404, "payee_not_found"),
            ("non_payee", 404, "payee_not_found"),
            ("zero", 422, "validation_error"),
            ("negative", 422, "validation_error"),
            ("float", 422, "validation_error"),
            ("integral_float", 422, "validation_error"),
            ("string_amount", 422, "validation_error"),
            ("unknown_currency", 422, "validation_error"),
            ("upper_case_currency", 422, "validation_error"),
            ("below_the_minimum", 422, "escrow_amount_too_small"),
            ("no_reference", 422, "validation_error"),
            ("currency_mismatch", 402, "insufficient_funds"),
            ("short_by_the_fee", 402, "insufficient_funds"),
            ("too_large", 422, "escrow_amount_too_large"),
            ("not_a_customer", 403, "forbidden"),
            ("no_idempotency_key", 400, "idempotency_key_required"),
            ("no_token", 401, "unauthorized"),
        ],
    )
    async def test_bad_offers_write_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, case: str, status: int, code: str
    ) -> None:
        customer, payee = await parties(session)
        bystander = await create_user(session, roles=CUSTOMER)
        await fund(session, customer.id, 10_499, "usd")  # one cent short of 100.00 + 5%
        body = offer(payee.id, amount=10_000)
        request_headers = headers(customer.id, CUSTOMER)
        body = {
            "self": offer(customer.id, amount=100),
            "unknown_payee": offer("nobody-here", amount=100),
            "non_payee": offer(bystander.id, amount=100),
            "zero": offer(payee.id, amount=0),
            "negative": offer(payee.id, amount=-100),
            "float": offer(payee.id, amount=10.5),
            "integral_float": offer(payee.id, amount=100.0),
            "string_amount": offer(payee.id, amount="100"),
            "unknown_currency": offer(payee.id, amount=100, currency="xyz"),
            "upper_case_currency": offer(payee.id, amount=100, currency="USD"),
            "below_the_minimum": offer(payee.id, amount=99),
            "no_reference": {k: v for k, v in offer(payee.id, 100).items() if k != "reference"},
            "currency_mismatch": offer(payee.id, amount=100, currency="eur"),
            "too_large": offer(payee.id, amount=MAX_MINOR_AMOUNT),
        }.get(case, body)
        if case == "not_a_customer":
            request_headers = headers(payee.id, PAYEE)
        elif case == "no_idempotency_key":
            request_headers = auth(customer.id, CUSTOMER)
        elif case == "no_token":
            request_headers = {"Idempotency-Key": "k"}
        before = await written(session)
        response = await client.post(ESCROWS, json=body, headers=request_headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        assert await written(session) == before
        assert await balance(session, customer.id, AVAILABLE, "usd") == 10_499

    @pytest.mark.parametrize(
        ("case", "status", "code"),
        [
            ("no_token_no_key", 401, "unauthorized"),
            ("not_a_customer_no_key", 403, "forbidden"),
        ],
    )
    async def test_refusals_keep_their_order_without_a_key(
        self, client: httpx.AsyncClient, session: AsyncSession, case: str, status: int, code: str
    ) -> None:
        """The token is checked first, then the role, then the Idempotency-Key, as the
        separate dependencies did before the settlement steps had one."""
        customer, payee = await parties(session)
        await fund(session, customer.id, 30_000)
        request_headers = {} if case == "no_token_no_key" else auth(payee.id, PAYEE)
        response = await client.post(ESCROWS, json=offer(payee.id), headers=request_headers)
        assert (response.status_code, response.json()["code"]) == (status, code)

    async def test_same_key_same_body_returns_the_same_escrow(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 30_000)
        request_headers = headers(customer.id, CUSTOMER, key="offer-once")
        first = await client.post(ESCROWS, json=offer(payee.id), headers=request_headers)
        before = await written(session)
        again = await client.post(ESCROWS, json=offer(payee.id), headers=request_headers)
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert await written(session) == before
        other = await client.post(ESCROWS, json=offer(payee.id, 20), headers=request_headers)
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"
        assert await written(session) == before
        assert await balance(session, customer.id, AVAILABLE, "usd") == 30_000 - 10_500


class TestMinimumPrice:
    """The smallest job price: one major unit, raised so that each fee takes at least
    one minor unit (5% and 20% by default)."""

    @pytest.mark.parametrize(
        ("currency", "minimum", "platform_fee", "service_fee"),
        [
            ("usd", 100, 5, 20),
            ("jpy", 11, 1, 2),  # 1 yen would pay no fee: 11 is the first that does
            ("kwd", 1_000, 50, 200),
            ("isk", 100, 5, 20),  # two-decimal in Stripe's API
        ],
    )
    async def test_the_minimum_is_accepted_and_pays_every_fee(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        currency: str,
        minimum: int,
        platform_fee: int,
        service_fee: int,
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10 * minimum, currency)
        before = await written(session)
        below = await client.post(
            ESCROWS,
            json=offer(payee.id, amount=minimum - 1, currency=currency),
            headers=headers(customer.id, CUSTOMER),
        )
        assert below.status_code == 422, below.text
        assert below.json()["code"] == "escrow_amount_too_small"
        assert below.json()["minimum"] == minimum
        assert await written(session) == before
        created = await _create(client, customer.id, payee.id, amount=minimum, currency=currency)
        assert created["platform_fee_amount"] == platform_fee
        payee_view = await client.get(f"{ESCROWS}/{created['id']}", headers=auth(payee.id, PAYEE))
        assert payee_view.json()["service_fee_amount"] == service_fee

    async def test_a_job_paid_by_card_has_the_same_minimum(
        self, app_factory: Any, session: AsyncSession, stripe_mock: Any
    ) -> None:
        """Checkout with ``purpose: escrow`` charges within the top-up limits (50 jpy by
        default, above the job minimum); with limits that would allow less, the job
        minimum still holds: refused before any order is written or Stripe is asked."""
        from decimal import Decimal

        from payments_api.money import CurrencyLimits, OperationLimits

        low = OperationLimits(min=Decimal(1), max=Decimal(1_000_000))
        app = app_factory(
            amount_limits={"jpy": CurrencyLimits(topup=low, debit=low, withdrawal=low)}
        )
        sessions = stripe_mock.post("/v1/checkout/sessions")
        customer, payee = await parties(session)
        before = await written(session)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            response = await client.post(
                "/api/v1/checkout/sessions",
                json={
                    "purpose": "escrow",
                    **offer(payee.id, amount=10, currency="jpy"),
                    "success_url": "http://localhost:3000/ok",
                    "cancel_url": "http://localhost:3000/no",
                },
                headers=headers(customer.id, CUSTOMER),
            )
        assert response.status_code == 422, response.text
        assert (response.json()["code"], response.json()["minimum"]) == (
            "escrow_amount_too_small",
            11,
        )
        assert not sessions.called
        assert await written(session) == before


class TestTransitionRejects:
    async def _accepted(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> tuple[dict[str, Any], str, str]:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        await _post(client, created["id"], "accept", payee.id, PAYEE)
        return created, customer.id, payee.id

    async def test_payee_cannot_complete_their_own_job(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        created, _customer, payee = await self._accepted(client, session)
        before = await written(session)
        for roles in (PAYEE, [*PAYEE, *ADMIN]):
            response = await _post(client, created["id"], "complete", payee, roles)
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "escrow_action_forbidden"
        assert await written(session) == before
        assert await balance(session, payee, AVAILABLE, "usd") == 0

    async def test_customer_cannot_accept(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        before = await written(session)
        response = await _post(client, created["id"], "accept", customer.id, CUSTOMER)
        assert response.status_code == 403
        assert response.json()["code"] == "escrow_action_forbidden"
        assert await written(session) == before

    async def test_payee_cannot_cancel_after_accepting(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        created, _customer, payee = await self._accepted(client, session)
        before = await written(session)
        response = await _post(client, created["id"], "cancel", payee, PAYEE)
        assert response.status_code == 403
        assert response.json()["current_status"] == "accepted"
        assert await written(session) == before

    async def test_customer_cancel_after_accept_obeys_policy(
        self, app_factory: Any, session: AsyncSession
    ) -> None:
        app = app_factory(escrow_customer_may_cancel_after_accept=False)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            created, customer, _payee = await self._accepted(client, session)
            before = await written(session)
            response = await _post(client, created["id"], "cancel", customer, CUSTOMER)
        assert response.status_code == 403
        assert response.json()["code"] == "escrow_action_forbidden"
        assert await written(session) == before

    @pytest.mark.parametrize(
        ("path", "action", "current"),
        [
            ([], "complete", "created"),
            (["cancel"], "accept", "cancelled"),
            (["cancel"], "complete", "cancelled"),
            (["accept", "complete"], "cancel", "completed"),
            (["accept", "complete"], "accept", "completed"),
        ],
    )
    async def test_illegal_transitions_are_409_with_the_current_status(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        path: list[str],
        action: str,
        current: str,
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        actor = {"accept": (payee.id, PAYEE), "complete": (customer.id, CUSTOMER)}
        for step in path:
            sub, roles = actor.get(step, (customer.id, CUSTOMER))
            assert (await _post(client, created["id"], step, sub, roles)).status_code == 200
        before = await written(session)
        sub, roles = actor.get(action, (customer.id, CUSTOMER))
        response = await _post(client, created["id"], action, sub, roles)
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "escrow_invalid_transition"
        assert problem["current_status"] == current
        assert problem["action"] == action
        assert await written(session) == before

    async def test_strangers_get_404_and_write_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        stranger = await create_user(session, roles=[*CUSTOMER, *PAYEE])
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        before = await written(session)
        read = await client.get(f"{ESCROWS}/{created['id']}", headers=auth(stranger.id, PAYEE))
        assert read.status_code == 404
        assert read.json()["code"] == "escrow_not_found"
        for action in ("accept", "complete", "cancel"):
            response = await _post(client, created["id"], action, stranger.id, [*CUSTOMER, *PAYEE])
            assert response.status_code == 404, action
            assert response.json()["code"] == "escrow_not_found"
        listed = await client.get(ESCROWS, headers=auth(stranger.id, CUSTOMER))
        assert listed.json()["data"] == []
        assert await written(session) == before

    @pytest.mark.parametrize("escrow_id", ["esc_999999999", "esc_x", "ord_1", "12"])
    async def test_unknown_ids_are_404(self, client: httpx.AsyncClient, escrow_id: str) -> None:
        response = await client.get(f"{ESCROWS}/{escrow_id}", headers=auth("anyone", CUSTOMER))
        assert response.status_code == 404
        assert response.json()["code"] == "escrow_not_found"

    async def test_transitions_require_an_idempotency_key(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500)
        created = await _create(client, customer.id, payee.id)
        for action, sub, roles in (
            ("accept", payee.id, PAYEE),
            ("complete", customer.id, CUSTOMER),
            ("cancel", customer.id, CUSTOMER),
        ):
            response = await client.post(
                f"{ESCROWS}/{created['id']}/{action}", headers=auth(sub, roles)
            )
            assert response.status_code == 400
            assert response.json()["code"] == "idempotency_key_required"
        read = await client.get(f"{ESCROWS}/{created['id']}", headers=auth(customer.id, CUSTOMER))
        assert read.json()["status"] == "created"


class TestRead:
    async def test_each_party_sees_its_side_of_the_money(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        admin = await create_user(session, roles=ADMIN)
        await fund(session, customer.id, 10_500)
        project = await own_project(session, payee.id)
        created = await _create(
            client, customer.id, payee.id, project_id=project, description="Logo"
        )
        path = f"{ESCROWS}/{created['id']}"
        as_customer = (await client.get(path, headers=auth(customer.id, CUSTOMER))).json()
        as_payee = (await client.get(path, headers=auth(payee.id, PAYEE))).json()
        as_admin = (await client.get(path, headers=auth(admin.id, ADMIN))).json()
        assert as_customer["amount"] == as_payee["amount"] == 10_000
        assert (as_customer["hold_amount"], as_customer["platform_fee_amount"]) == (10_500, 500)
        assert as_customer["payee_amount"] is None
        assert as_customer["service_fee_amount"] is None
        assert (as_payee["payee_amount"], as_payee["service_fee_amount"]) == (8_000, 2_000)
        assert as_payee["hold_amount"] is None
        assert as_payee["platform_fee_amount"] is None
        assert as_admin["hold_amount"] == 10_500
        assert as_admin["payee_amount"] == 8_000
        assert as_customer["project_id"] == project
        assert as_customer["funding"] == "wallet"

    async def test_list_is_paginated_and_filtered(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 100_000)
        ids = [(await _create(client, customer.id, payee.id, amount=100))["id"] for _ in range(3)]
        await _post(client, ids[0], "cancel", customer.id, CUSTOMER)
        who = auth(customer.id, CUSTOMER)
        first = (await client.get(f"{ESCROWS}?limit=2", headers=who)).json()
        assert [e["id"] for e in first["data"]] == [ids[2], ids[1]]
        assert first["has_more"] is True
        rest = (await client.get(f"{ESCROWS}?limit=2&starting_after={ids[1]}", headers=who)).json()
        assert [e["id"] for e in rest["data"]] == [ids[0]]
        assert rest["has_more"] is False
        cancelled = (await client.get(f"{ESCROWS}?status=cancelled", headers=who)).json()
        assert [e["id"] for e in cancelled["data"]] == [ids[0]]
        as_payee = auth(payee.id, PAYEE)
        mine = (await client.get(f"{ESCROWS}?role=payee", headers=as_payee)).json()
        assert len(mine["data"]) == 3
        none = (await client.get(f"{ESCROWS}?role=customer", headers=as_payee)).json()
        assert none["data"] == []
        bad = await client.get(f"{ESCROWS}?role=boss", headers=as_payee)
        assert bad.status_code == 422

    async def test_escrow_rows_keep_the_split(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session)
        await fund(session, customer.id, 10_500, "jpy")
        created = await _create(client, customer.id, payee.id, amount=10_000, currency="jpy")
        row = await session.get(Escrow, int(created["id"].removeprefix("esc_")))
        assert row is not None
        assert (row.platform_fee_bps, row.service_fee_bps) == (500, 2_000)
        assert (row.hold_amount, row.service_fee_amount, row.payee_amount) == (10_500, 2_000, 8_000)
