"""Property: random sequences of top-ups, wallet debits, escrows (card and wallet), direct
payments (card and wallet), orders that grant credit (card and wallet), refunds, wallet
cash-outs to cards and card disputes (won and lost), all through the API (Stripe mocked
by respx, Stripe's events signed as Stripe signs them), keep the ledger whole:

- no balance ever negative, except the available balance of a buyer whose spent credit a
  forced refund took back or whose top-up a dispute took back (the only two ways);
- a spend or cash-out refused for a frozen wallet only when a forced refund or a dispute
  froze it;
- every ledger transaction balanced, cached balances equal to the postings;
- money is conserved: what customers paid in at Stripe (charges, disputed money Stripe
  gave back) is exactly what the users hold, plus what went back out (refunds and
  cash-outs to cards, money and fees disputes took), plus what the platform earned (fees,
  sales, less what it covered and what disputes cost it); and it is what the platform's
  Stripe balance mirror moved."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import respx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.orders.models import Order
from tests.disputes.test_webhook_handlers import FEE as DISPUTE_FEE
from tests.disputes.test_webhook_handlers import dispute
from tests.factories import create_user, ledger_invariants
from tests.helpers import auth, make_event, stripe_object
from tests.orders.test_checkout import URLS
from tests.projects.conftest import balance_object, create_project, enable_payouts, new_payee
from tests.refunds.helpers import ADMIN, deliver, platform, refund_from_request, wallet

PLATFORM = (
    AccountKind.platform_fees,
    AccountKind.sales,
    AccountKind.adjustments,
    AccountKind.disputes,
)
HELD = (AccountKind.available, AccountKind.escrow, AccountKind.withdrawing, AccountKind.refunding)
CASH_OUT_CODES = {"insufficient_funds", "nothing_refundable", "refund_exceeds_refundable"}
REFUND_CODES = {
    "refund_exceeds_refundable",
    "refund_exceeds_available",
    "credit_already_spent",
    "refund_not_supported",
    "order_not_refundable",
}


@dataclass(frozen=True)
class Op:
    name: str
    user: int
    amount: int
    pick: int
    flag: bool


ops = st.builds(
    Op,
    name=st.sampled_from(
        [
            "topup",
            "debit",
            "escrow_wallet",
            "escrow_card",
            "direct_wallet",
            "direct_card",
            "order_wallet",
            "order_card",
            "refund",
            "refund",
            "cash_out",
            "dispute",
        ]
    ),
    user=st.integers(0, 1),
    amount=st.sampled_from([1_000, 2_500, 3_333, 7_000]),
    pick=st.integers(0, 50),
    flag=st.booleans(),
)


@dataclass
class World:
    customers: list[str]
    payee: Any
    project_id: str
    prices: list[str]
    money_in: int = 0
    """Card money that reached the platform's Stripe balance."""
    money_out: int = 0
    """What left it: refunds and cash-outs to cards, what disputes withdrew (with fees)."""
    orders: list[tuple[int, str, bool]] = field(default_factory=list)
    """Paid orders: (id, purpose, card)."""
    forced: set[str] = field(default_factory=set)
    disputed: set[str] = field(default_factory=set)
    """Users whose top-up a dispute took back: their available may be negative and their
    wallet frozen."""
    disputed_orders: set[int] = field(default_factory=set)
    cash_outs: int = 0
    frozen_refusals: int = 0

    def frozen(self, user: str) -> bool:
        return user in self.forced or user in self.disputed


def spent(world: World, user: str, response: httpx.Response) -> bool:
    """A wallet spend either succeeds or is refused with nothing written: a short balance
    (402) or, only when a forced refund or a dispute froze it, a frozen wallet (409)."""
    if response.status_code == 201:
        return True
    refusal = (response.status_code, response.json()["code"])
    if refusal == (409, "wallet_frozen"):
        assert world.frozen(user), response.text
        world.frozen_refusals += 1
    else:
        assert refusal == (402, "insufficient_funds"), response.text
    return False


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def load(session: AsyncSession, public: str) -> Order:
    order = await session.scalar(
        select(Order)
        .where(Order.id == int(public.removeprefix("ord_")))
        .execution_options(populate_existing=True)
    )
    assert order is not None
    return order


async def card_pay(
    client: httpx.AsyncClient, session: AsyncSession, user: str, body: dict[str, Any]
) -> Order | None:
    started = await client.post(
        "/api/v1/checkout/sessions",
        json={**body, **URLS},
        headers={**auth(user, ["customer"]), **key()},
    )
    assert started.status_code == 201, started.text
    order = await load(session, started.json()["order_id"])
    intent = stripe_object("payment_intent")
    intent.update(
        id=f"pi_{uuid.uuid4().hex[:16]}",
        amount=order.amount,
        amount_received=order.amount,
        currency=order.currency,
        status="succeeded",
        latest_charge=None,
        last_payment_error=None,
        metadata={"order_id": str(order.id), "user_id": user, "purpose": order.purpose},
    )
    response = await deliver(client, make_event("payment_intent.succeeded", intent))
    assert response.status_code == 200, response.text
    return await load(session, started.json()["order_id"])


async def settle_escrow(
    client: httpx.AsyncClient, world: World, escrow_id: str, user: str, payee: str
) -> None:
    """Accept, then complete as the customer. Completing pays the payee out of the
    customer's control, so a wallet frozen by a dispute or a forced refund refuses it (the
    held money stays in escrow), exactly as it refuses a spend."""
    for action, actor, role in (("accept", payee, "payee"), ("complete", user, "customer")):
        response = await client.post(
            f"/api/v1/escrows/{escrow_id}/{action}",
            json={},
            headers={**auth(actor, [role]), **key()},
        )
        if action == "complete" and response.status_code == 409:
            assert response.json()["code"] == "wallet_frozen", response.text
            assert world.frozen(user), response.text
            world.frozen_refusals += 1
            return
        assert response.status_code == 200, response.text


async def apply(client: httpx.AsyncClient, session: AsyncSession, world: World, op: Op) -> None:
    user = world.customers[op.user]
    headers = {**auth(user, ["customer"]), **key()}
    payee = world.payee
    if op.name == "topup":
        order = await card_pay(
            client, session, user, {"purpose": "topup", "amount": op.amount, "currency": "usd"}
        )
        assert order is not None
        assert order.status == "succeeded"
        world.money_in += op.amount
        world.orders.append((order.id, "topup", True))
    elif op.name == "debit":
        amount = op.amount // 3
        if op.flag:  # spend everything (so that granted credit is spent)
            amount = (await wallet(session, user))["available"]
            if amount <= 0:
                return
        response = await client.post(
            f"/api/v1/wallets/{user}/debits",
            json={"amount": amount, "currency": "usd", "description": "usage"},
            headers={**auth("backend", ["service"]), **key()},
        )
        spent(world, user, response)
    elif op.name == "escrow_wallet":
        response = await client.post(
            "/api/v1/escrows",
            json={"payee_id": payee.id, "amount": op.amount, "currency": "usd", "reference": "j"},
            headers=headers,
        )
        if spent(world, user, response) and op.flag:
            await settle_escrow(client, world, response.json()["id"], user, payee.id)
    elif op.name == "escrow_card":
        order = await card_pay(
            client,
            session,
            user,
            {
                "purpose": "escrow",
                "payee_id": payee.id,
                "amount": op.amount,
                "currency": "usd",
                "reference": "job",
            },
        )
        assert order is not None
        world.money_in += order.amount
        world.orders.append((order.id, "escrow", True))
        if op.flag:
            await settle_escrow(
                client, world, f"esc_{order.reference['escrow_id']}", user, payee.id
            )
    elif op.name in ("direct_wallet", "direct_card"):
        body = {
            "purpose": "direct",
            "payee_id": payee.id,
            "project_id": world.project_id,
            "amount": op.amount,
            "currency": "usd",
        }
        if op.name == "direct_card":
            order = await card_pay(client, session, user, body)
            assert order is not None
            world.money_in += int(order.reference["application_fee_amount"])
            world.orders.append((order.id, "direct", True))
        else:
            response = await client.post(
                "/api/v1/orders", json={"source": "wallet", **body}, headers=headers
            )
            if spent(world, user, response):
                world.orders.append((int(response.json()["id"][4:]), "direct", False))
    elif op.name in ("order_wallet", "order_card"):
        body = {"purpose": "order", "price": world.prices[op.pick % len(world.prices)]}
        if op.name == "order_card":
            order = await card_pay(client, session, user, body)
            assert order is not None
            world.money_in += order.amount
            world.orders.append((order.id, "order", True))
        else:
            response = await client.post(
                "/api/v1/orders", json={"source": "wallet", **body}, headers=headers
            )
            if spent(world, user, response):
                world.orders.append((int(response.json()["id"][4:]), "order", False))
    elif op.name == "cash_out":
        amount = op.amount // 4
        response = await client.post(
            "/api/v1/me/wallet/refunds",
            json={"amount": amount, "currency": "usd"},
            headers=headers,
        )
        if response.status_code == 201:
            cash_out = response.json()
            assert (cash_out["status"], cash_out["refunded_amount"]) == ("succeeded", amount)
            world.money_out += amount
            world.cash_outs += 1
        elif response.json()["code"] == "wallet_frozen":
            assert world.frozen(user), response.text
            world.frozen_refusals += 1
        else:
            assert response.status_code in (402, 409), response.text
            assert response.json()["code"] in CASH_OUT_CODES, response.text
    elif op.name == "dispute":
        await open_and_close_dispute(client, session, world, op)
    else:
        if not world.orders:
            return
        order_id, purpose, card = world.orders[op.pick % len(world.orders)]
        asked: dict[str, Any] = {"order_id": f"ord_{order_id}", "force": op.flag}
        if op.amount != 7_000:
            asked["amount"] = op.amount // 10
        response = await client.post(
            "/api/v1/admin/refunds", json=asked, headers={**ADMIN, **key()}
        )
        if response.status_code != 201:
            assert response.json()["code"] in REFUND_CODES, response.text
            return
        refund = response.json()
        assert refund["status"] == "succeeded", refund
        if refund["forced"]:
            world.forced.add(refund["user_id"])
        if card:
            # a destination charge's payee share came back from the connected account
            world.money_out += refund["amount"] - (
                refund["payee_share"] if purpose == "direct" else 0
            )


async def open_and_close_dispute(
    client: httpx.AsyncClient, session: AsyncSession, world: World, op: Op
) -> None:
    """A card top-up disputed (Stripe withdraws the amount and its fee; the customer's
    available pays it, possibly below zero, and the wallet freezes), then won (``flag``:
    the amount comes back, the fee stays the platform's cost) or lost."""
    topups = [
        order_id
        for order_id, purpose, card in world.orders
        if purpose == "topup" and card and order_id not in world.disputed_orders
    ]
    if not topups:
        return
    order = await load(session, f"ord_{topups[op.pick % len(topups)]}")
    world.disputed_orders.add(order.id)
    world.disputed.add(order.user_id)
    amount = min(order.amount, op.amount // 5)
    dp = f"dp_prop_{uuid.uuid4().hex[:12]}"
    outcome = "won" if op.flag else "lost"
    opened = dispute(order, dp, "needs_response", amount=amount)
    closed = dispute(order, dp, outcome, amount=amount, reinstated=op.flag)
    for event in (
        make_event("charge.dispute.created", opened),
        make_event("charge.dispute.closed", closed),
    ):
        response = await deliver(client, event)
        assert response.json()["status"] == "processed", response.text
    world.money_out += amount + DISPUTE_FEE
    if op.flag:
        world.money_in += amount


async def held(session: AsyncSession, user: str) -> int:
    ledger = LedgerService(session)
    return sum([await ledger.balance_of(AccountRef.user(user, kind, "usd")) for kind in HELD])


async def check(session: AsyncSession, world: World) -> None:
    assert await ledger_invariants(session) == []
    for user in [*world.customers, world.payee.id]:
        balances = await wallet(session, user)
        assert balances["escrow"] >= 0, (user, balances)
        assert balances["withdrawing"] >= 0, (user, balances)
        if user not in world.forced and user not in world.disputed:
            assert balances["available"] >= 0, (user, balances)


# every kind of pay-in and a refund of each, including a forced one
EVERY_KIND = [
    Op("order_wallet", 0, 1_000, 1, False),
    Op("debit", 0, 7_000, 0, True),
    Op("refund", 0, 7_000, 2, True),  # the wallet order: credit spent, forced
    Op("direct_wallet", 1, 2_500, 0, False),
    Op("refund", 0, 3_333, 3, False),
    Op("escrow_card", 1, 3_333, 0, True),
    Op("refund", 0, 2_500, 5, False),
    Op("order_card", 1, 1_000, 1, False),
    Op("refund", 0, 7_000, 6, True),
    Op("direct_card", 0, 2_500, 0, False),
    Op("refund", 0, 1_000, 7, False),
    Op("escrow_wallet", 1, 1_000, 0, True),
    Op("topup", 1, 1_000, 0, False),
    Op("refund", 0, 7_000, 9, False),
]
# cash-outs, a dispute lost (below zero, frozen: spends and cash-outs refused) and one won
# (made whole, unfrozen, cashes out again)
DISPUTES_AND_CASH_OUTS = [
    Op("cash_out", 0, 7_000, 0, False),
    Op("debit", 0, 7_000, 0, True),
    Op("dispute", 0, 7_000, 0, False),
    Op("debit", 0, 1_000, 0, False),
    Op("cash_out", 0, 1_000, 0, False),
    Op("dispute", 1, 3_333, 0, True),
    Op("cash_out", 1, 2_500, 0, False),
    Op("topup", 1, 1_000, 0, False),
]


class TestSpendingKeepsTheLedgerWhole:
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(sequence=st.lists(ops, min_size=4, max_size=12))
    @example(EVERY_KIND)
    @example(DISPUTES_AND_CASH_OUTS)
    async def test_random_sequences(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_payins: respx.MockRouter,
        sequence: list[Op],
    ) -> None:
        stripe_payins.post("/v1/refunds").mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="usd")
            )
        )
        # the payee's connected account holds plenty: no platform cover for card tips
        stripe_payins.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=balance_object([(10**9, "usd")], [(0, "usd")]))
        )
        customers = [f"prop_{uuid.uuid4().hex[:10]}" for _ in range(2)]
        for customer in customers:
            await create_user(session, id=customer, roles=["customer"])
        payee = new_payee()
        await create_user(session, id=payee.id, roles=["payee"])
        project_id = await create_project(client, payee)
        await enable_payouts(client, payee)
        prices = []
        for unit, grants in ((1_500, None), (1_000, 1_500)):
            lookup = f"prop-{uuid.uuid4().hex[:10]}"
            price: dict[str, Any] = {
                "lookup_key": lookup,
                "name": "Pack",
                "unit_amount": unit,
                "currency": "usd",
            }
            if grants:
                price["grants_credit"] = grants
            created = await client.post(
                "/api/v1/admin/prices", json=price, headers={**ADMIN, **key()}
            )
            assert created.status_code == 201, created.text
            prices.append(lookup)
        world = World(customers=customers, payee=payee, project_id=project_id, prices=prices)
        stripe_before = await platform(session, AccountKind.stripe_balance)
        platform_before = sum([await platform(session, kind) for kind in PLATFORM])
        for index in range(len(customers)):  # each starts with a card top-up (orders 0, 1)
            await apply(client, session, world, Op("topup", index, 10_000, 0, False))

        for op in sequence:
            await apply(client, session, world, op)
            await check(session, world)

        users_hold = sum([await held(session, user) for user in [*world.customers, payee.id]])
        earned = sum([await platform(session, kind) for kind in PLATFORM]) - platform_before
        net_in = world.money_in - world.money_out
        if sequence[:3] == EVERY_KIND[:3]:
            assert world.forced == {customers[0]}  # the explicit example reaches force
        if sequence == DISPUTES_AND_CASH_OUTS:  # ... and this one each dispute path
            assert (world.disputed, world.cash_outs, world.frozen_refusals) == (
                set(customers),
                2,
                2,
            )
            assert (await wallet(session, customers[0]))["available"] == -(1_400 + DISPUTE_FEE)
            assert (await wallet(session, customers[1]))["available"] == 10_000 - 625 + 1_000
        assert net_in == users_hold + earned
        assert stripe_before - await platform(session, AccountKind.stripe_balance) == net_in
