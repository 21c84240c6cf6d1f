"""Stripe's special cases for amounts (https://docs.stripe.com/currencies#special-cases),
through the HTTP API: every route that makes Stripe move money in a currency with a
step refuses an off-step amount with 422 ``amount_not_in_steps`` (and the ``step``)
before anything is stored or sent, and sends an on-step amount as it is.

- isk: two-decimal in Stripe's API but charged and refunded in whole krónur (100);
- three-decimal currencies (kwd): charged and refunded in tens;
- huf and twd: charged with two decimals (step 1) but paid out in whole units (100),
  like isk; a withdrawal ends in a payout, so it follows the payout step.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund
from tests.factories import create_user, fund
from tests.helpers import auth
from tests.payouts.test_withdrawals import enabled_payee, transfer_response
from tests.refunds.helpers import form, paid_order, refund_from_request

URLS = {"success_url": "http://localhost:3000/ok", "cancel_url": "http://localhost:3000/no"}
ADMIN = auth("steps-admin", ["admin"])

# (currency, amount in minor units, whether Stripe can charge it)
CHARGES = [
    ("isk", 2_050, False),  # 20.50 kr: Stripe charges whole krónur only
    ("isk", 2_000, True),
    ("huf", 2_050, True),  # huf and twd charge with two decimals
    ("twd", 2_050, True),
    ("kwd", 10_005, False),  # three decimals: the last one must be 0
    ("kwd", 10_010, True),
    ("usd", 2_001, True),
]
# (currency, amount, whether Stripe can pay it out)
PAYOUTS = [
    ("huf", 10_050, False),
    ("huf", 10_000, True),
    ("twd", 10_001, False),
    ("twd", 10_000, True),
    ("isk", 10_050, False),
    ("isk", 10_000, True),
    ("usd", 10_050, True),
]


def _refused_for_step(response: httpx.Response, step: int) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "amount_not_in_steps"
    assert response.json()["step"] == step


def _charged(request: httpx.Request) -> tuple[str, str]:
    """The amount and currency a Checkout Session's one line item charges, as sent."""
    sent = form(request)
    assert not any(key.startswith("line_items[1]") for key in sent), sent
    price = "line_items[0][price_data]"
    return sent[f"{price}[unit_amount]"], sent[f"{price}[currency]"]


async def _orders_of(session: AsyncSession, user: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Order).where(Order.user_id == user)
    )
    return int(count or 0)


class TestCharges:
    @pytest.mark.parametrize(("currency", "amount", "chargeable"), CHARGES)
    async def test_checkout_top_up(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_payins: respx.MockRouter,
        currency: str,
        amount: int,
        chargeable: bool,
    ) -> None:
        user = f"steps-topup-{uuid.uuid4().hex[:8]}"
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={"purpose": "topup", "amount": amount, "currency": currency, **URLS},
            headers={**auth(user), "Idempotency-Key": uuid.uuid4().hex},
        )
        sessions = stripe_payins["sessions"].calls
        if chargeable:
            assert response.status_code == 201, response.text
            assert len(sessions) == 1
            assert _charged(sessions[0].request) == (str(amount), currency)
        else:
            _refused_for_step(response, {"isk": 100, "kwd": 10}[currency])
            assert sessions.call_count == 0
            assert await _orders_of(session, user) == 0

    @pytest.mark.parametrize(("currency", "amount", "chargeable"), CHARGES)
    async def test_auto_reload_amount(
        self, client: httpx.AsyncClient, currency: str, amount: int, chargeable: bool
    ) -> None:
        """An auto-reload charges its amount off-session later: refused when set."""
        user = f"steps-reload-{uuid.uuid4().hex[:8]}"
        response = await client.put(
            "/api/v1/me/auto-reloads",
            json={"currency": currency, "threshold": 1_000, "amount": amount},
            headers={**auth(user), "Idempotency-Key": uuid.uuid4().hex},
        )
        if chargeable:
            assert response.status_code == 200, response.text
            assert response.json()["amount"] == amount
        else:
            _refused_for_step(response, {"isk": 100, "kwd": 10}[currency])
            listed = await client.get("/api/v1/me/auto-reloads", headers=auth(user))
            assert listed.json()["data"] == []

    @pytest.mark.parametrize(("price", "chargeable"), [(1_000, False), (2_000, True)])
    async def test_escrow_paid_by_card_charges_its_hold(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_payins: respx.MockRouter,
        price: int,
        chargeable: bool,
    ) -> None:
        """The card pays price + 5% in one charge: 10.00 kr + 0.50 is not chargeable,
        20.00 kr + 1.00 is."""
        customer, payee = (f"steps-{role}-{uuid.uuid4().hex[:8]}" for role in ("c", "p"))
        await create_user(session, id=customer, roles=["customer"])
        await create_user(session, id=payee, roles=["payee"])
        body: dict[str, Any] = {
            "purpose": "escrow",
            "payee_id": payee,
            "amount": price,
            "currency": "isk",
            "reference": "job",
            **URLS,
        }
        response = await client.post(
            "/api/v1/checkout/sessions",
            json=body,
            headers={**auth(customer, ["customer"]), "Idempotency-Key": uuid.uuid4().hex},
        )
        sessions = stripe_payins["sessions"].calls
        if chargeable:
            assert response.status_code == 201, response.text
            assert [_charged(c.request) for c in sessions] == [(str(price + price // 20), "isk")]
        else:
            _refused_for_step(response, 100)
            assert sessions.call_count == 0
            assert await _orders_of(session, customer) == 0


class TestRefunds:
    @pytest.mark.parametrize(("amount", "refundable"), [(1_050, False), (1_000, True)])
    async def test_admin_refund_of_an_isk_payment(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        amount: int,
        refundable: bool,
    ) -> None:
        route = stripe_mock.post("/v1/refunds").mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="isk")
            )
        )
        order = await paid_order(client, session, amount=5_000, currency="isk")
        response = await client.post(
            "/api/v1/admin/refunds",
            json={"order_id": f"ord_{order.id}", "amount": amount},
            headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
        )
        rows = await session.scalar(
            select(func.count()).select_from(Refund).where(Refund.order_id == order.id)
        )
        if refundable:
            assert response.status_code == 201, response.text
            assert [form(c.request)["amount"] for c in route.calls] == [str(amount)]
            assert rows == 1
        else:
            _refused_for_step(response, 100)
            assert route.call_count == 0
            assert rows == 0

    @pytest.mark.parametrize(("amount", "refundable"), [(1_050, False), (1_000, True)])
    async def test_wallet_cash_out_in_isk(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        amount: int,
        refundable: bool,
    ) -> None:
        route = stripe_mock.post("/v1/refunds").mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="isk")
            )
        )
        user = f"steps-cash-{uuid.uuid4().hex[:8]}"
        await paid_order(client, session, user_id=user, amount=5_000, currency="isk")
        response = await client.post(
            "/api/v1/me/wallet/refunds",
            json={"amount": amount, "currency": "isk"},
            headers={**auth(user), "Idempotency-Key": uuid.uuid4().hex},
        )
        balance = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
        available = {b["currency"]: b["available"] for b in balance["balances"]}["isk"]
        if refundable:
            assert response.status_code == 201, response.text
            assert [form(c.request)["amount"] for c in route.calls] == [str(amount)]
            assert available == 5_000 - amount
        else:
            _refused_for_step(response, 100)
            assert route.call_count == 0
            assert available == 5_000


class TestPayouts:
    @pytest.mark.parametrize(("currency", "amount", "payable"), PAYOUTS)
    async def test_withdrawal(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        currency: str,
        amount: int,
        payable: bool,
    ) -> None:
        transfers = stripe_mock.post("/v1/transfers").mock(side_effect=transfer_response)
        user = f"steps-payee-{uuid.uuid4().hex[:8]}"
        await enabled_payee(session, user, amount=0)
        await fund(session, user, 50_000, currency)
        response = await client.post(
            "/api/v1/me/payouts",
            json={"amount": amount, "currency": currency},
            headers={**auth(user, ["payee"]), "Idempotency-Key": uuid.uuid4().hex},
        )
        if payable:
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "transferred"
            sent = [form(c.request) for c in transfers.calls]
            assert [(f["amount"], f["currency"]) for f in sent] == [(str(amount), currency)]
        else:
            _refused_for_step(response, 100)
            assert transfers.call_count == 0
