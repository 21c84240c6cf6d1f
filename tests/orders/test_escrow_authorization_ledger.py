"""The ledger shows a manual-capture escrow's card authorization apart from money (9.3).

An authorization posts the customer's ``authorized`` memo account against the
platform's ``card_authorizations``; capture (full or partial), release and expiry reverse
it exactly once, and captured money enters through the normal funding
(``stripe_balance -> escrow``). ``available`` never includes authorized money; the
balance API shows it in ``authorized``. Stripe is respx, webhooks signed as Stripe signs.
Platform accounts are shared by parallel tests: only their deltas are asserted.
"""

from __future__ import annotations

from typing import Any

import httpx
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.escrow.capture import EscrowCaptures
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.repository import LedgerRepository
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from tests.factories import ledger_invariants
from tests.helpers import auth, make_event
from tests.orders.test_checkout import balance, deliver
from tests.orders.test_escrow_manual_capture import (
    HOLD,
    PRICE,
    authorized_escrow,
    intent_of,
    new_party,
    post,
    stripe_answers,
)

Postings = dict[tuple[str, str | None], int]


async def escrow_transactions(
    session: AsyncSession, escrow_id: str
) -> list[tuple[str, Postings, dict[str, Any], bool]]:
    """(type, {(kind, owner): amount}, metadata, reverses the one before) of every
    ledger transaction of the escrow, oldest first."""
    number = int(escrow_id.removeprefix("esc_"))
    rows = (
        await session.execute(
            text(
                """
                SELECT t.id, t.type, t.metadata, t.reverses_transaction_id,
                       a.kind, a.owner_user_id, p.amount
                FROM ledger_transactions t
                JOIN ledger_postings p ON p.transaction_id = t.id
                JOIN ledger_accounts a ON a.id = p.account_id
                WHERE (t.metadata ->> 'escrow_id')::bigint = :escrow
                ORDER BY t.id, p.id
                """
            ),
            {"escrow": number},
        )
    ).all()
    ordered: list[int] = []
    by_id: dict[int, tuple[str, Postings, dict[str, Any], int | None]] = {}
    for tx_id, type_, metadata, reverses, kind, owner, amount in rows:
        if tx_id not in by_id:
            ordered.append(tx_id)
            by_id[tx_id] = (type_, {}, metadata, reverses)
        postings = by_id[tx_id][1]
        postings[(kind, owner)] = postings.get((kind, owner), 0) + amount
    result = []
    for index, tx_id in enumerate(ordered):
        type_, postings, metadata, reverses = by_id[tx_id]
        previous = ordered[index - 1] if index else None
        result.append((type_, postings, metadata, reverses is not None and reverses == previous))
    return result


async def platform(session: AsyncSession, kind: AccountKind) -> int:
    return await LedgerRepository(session).account_balance("", kind.value, "usd")


def memo(customer: str, amount: int) -> Postings:
    """The authorization's postings: +amount to the customer's memo."""
    return {("authorized", customer): amount, ("card_authorizations", None): -amount}


class TestAuthorizationInTheLedger:
    async def test_authorization_is_a_memo_never_available(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        cards_before = await platform(session, AccountKind.card_authorizations)
        stripe_before = await platform(session, AccountKind.stripe_balance)

        escrow_id, _order, pi = await authorized_escrow(client, session, customer, payee)

        [(kind, postings, metadata, _)] = await escrow_transactions(session, escrow_id)
        assert kind == "escrow_authorization"
        assert postings == memo(customer, HOLD)
        assert metadata["payment_intent_id"] == pi
        assert await platform(session, AccountKind.card_authorizations) - cards_before == -HOLD
        assert await platform(session, AccountKind.stripe_balance) == stripe_before
        response = await client.get("/api/v1/me/balance", headers=auth(customer))
        assert response.json()["balances"] == [
            {
                "currency": "usd",
                "available": 0,
                "escrow": 0,
                "withdrawing": 0,
                "refunding": 0,
                "pending": 0,
                "authorized": HOLD,
            }
        ]
        # The customer's ledger entries show the memo as what it is.
        entries = await client.get("/api/v1/me/ledger", headers=auth(customer))
        assert [(e["account"], e["amount"], e["type"]) for e in entries.json()["data"]] == [
            ("authorized", HOLD, "escrow_authorization")
        ]
        # Authorized money cannot be spent: a wallet-funded escrow is refused.
        spend = await post(
            client,
            "/api/v1/escrows",
            customer,
            ["customer"],
            {"payee_id": payee, "amount": 1_000, "currency": "usd", "reference": "spend"},
        )
        assert spend.status_code == 402, spend.text
        assert spend.json()["code"] == "insufficient_funds"
        assert await ledger_invariants(session) == []

    async def test_full_capture_reverses_the_memo_and_funds_the_escrow(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        cards_before = await platform(session, AccountKind.card_authorizations)
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        stripe_answers(stripe_payins, order, pi)

        accepted = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])
        assert accepted.status_code == 200, accepted.text
        # Stripe's event of the same capture, late: nothing more is posted.
        succeeded = make_event(
            "payment_intent.succeeded", intent_of(order, pi, "succeeded", amount_received=HOLD)
        )
        assert (await deliver(client, succeeded)).status_code == 200

        transactions = await escrow_transactions(session, escrow_id)
        assert [t[0] for t in transactions] == [
            "escrow_authorization",
            "escrow_authorization_captured",
            "escrow_funding",
            "escrow_platform_fee",
        ]
        _, ended, metadata, reverses = transactions[1]
        assert ended == {k: -v for k, v in memo(customer, HOLD).items()}
        assert reverses
        assert (metadata["captured"], metadata["released"]) == (HOLD, 0)
        assert transactions[2][1] == {
            ("stripe_balance", None): -HOLD,
            ("escrow", customer): HOLD,
        }
        assert await platform(session, AccountKind.card_authorizations) == cards_before
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, PRICE, 0)
        assert await ledger_invariants(session) == []

    async def test_partial_capture_moves_the_captured_part_and_releases_the_rest(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        cards_before = await platform(session, AccountKind.card_authorizations)
        stripe_before = await platform(session, AccountKind.stripe_balance)
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        stripe_answers(stripe_payins, order, pi)

        accepted = await post(
            client,
            f"/api/v1/escrows/{escrow_id}/accept",
            payee,
            ["payee"],
            {"amount_to_capture": 5_250},
        )
        assert accepted.status_code == 200, accepted.text

        transactions = await escrow_transactions(session, escrow_id)
        assert [t[0] for t in transactions][:3] == [
            "escrow_authorization",
            "escrow_authorization_captured",
            "escrow_funding",
        ]
        _, ended, metadata, reverses = transactions[1]
        # The whole authorization ends: 52.50 captured, 52.50 released to the card.
        assert ended == {k: -v for k, v in memo(customer, HOLD).items()}
        assert reverses
        assert (metadata["captured"], metadata["released"]) == (5_250, 5_250)
        assert transactions[2][1] == {
            ("stripe_balance", None): -5_250,
            ("escrow", customer): 5_250,
        }
        assert await platform(session, AccountKind.card_authorizations) == cards_before
        assert await platform(session, AccountKind.stripe_balance) - stripe_before == -5_250
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, 5_000, 0)
        assert await ledger_invariants(session) == []

    async def test_cancel_releases_the_memo_once(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        cards_before = await platform(session, AccountKind.card_authorizations)
        stripe_before = await platform(session, AccountKind.stripe_balance)
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        _capture, cancel = stripe_answers(stripe_payins, order, pi)

        cancelled = await post(
            client, f"/api/v1/escrows/{escrow_id}/cancel", customer, ["customer"], {}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancel.call_count == 1
        event = make_event(
            "payment_intent.canceled",
            intent_of(order, pi, "canceled", cancellation_reason="requested_by_customer"),
        )
        for _ in range(2):
            assert (await deliver(client, event)).status_code == 200

        transactions = await escrow_transactions(session, escrow_id)
        assert [(t[0], t[3]) for t in transactions] == [
            ("escrow_authorization", False),
            ("escrow_authorization_released", True),
        ]
        assert transactions[1][1] == {k: -v for k, v in memo(customer, HOLD).items()}
        assert (transactions[1][2]["captured"], transactions[1][2]["released"]) == (0, HOLD)
        assert await platform(session, AccountKind.card_authorizations) == cards_before
        assert await platform(session, AccountKind.stripe_balance) == stripe_before
        assert "usd" not in await balance(client, customer)
        assert await ledger_invariants(session) == []

    async def test_expiry_reverses_the_memo_as_expired(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        cards_before = await platform(session, AccountKind.card_authorizations)
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        expired = make_event(
            "payment_intent.canceled",
            intent_of(order, pi, "canceled", cancellation_reason="automatic"),
        )

        for _ in range(2):
            assert (await deliver(client, expired)).status_code == 200

        transactions = await escrow_transactions(session, escrow_id)
        assert [(t[0], t[3]) for t in transactions] == [
            ("escrow_authorization", False),
            ("escrow_authorization_expired", True),
        ]
        assert transactions[1][1] == {k: -v for k, v in memo(customer, HOLD).items()}
        assert await platform(session, AccountKind.card_authorizations) == cards_before
        assert "usd" not in await balance(client, customer)
        # A late capture event for the expired authorization posts no second reversal.
        late = make_event(
            "payment_intent.amount_capturable_updated", intent_of(order, pi, "requires_capture")
        )
        assert (await deliver(client, late)).status_code == 200
        assert len(await escrow_transactions(session, escrow_id)) == 2
        assert await ledger_invariants(session) == []

    async def test_captured_elsewhere_after_a_cancel_is_credited_once(
        self,
        client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        """The customer cancels, Stripe is down for the release, and the authorization
        is captured meanwhile (the dashboard): the memo ends as captured, the money goes
        to the customer's wallet once; the job's release, refused, reads it back and
        posts nothing more."""
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        cancel = stripe_payins.post(f"/v1/payment_intents/{pi}/cancel").mock(
            return_value=httpx.Response(503, json={"error": {"type": "api_error"}})
        )
        cancelled = await post(
            client, f"/api/v1/escrows/{escrow_id}/cancel", customer, ["customer"], {}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["capture_status"] == "release_requested"
        assert (await balance(client, customer))["usd"]["authorized"] == HOLD

        captured = intent_of(order, pi, "succeeded", amount_received=HOLD)
        assert (
            await deliver(client, make_event("payment_intent.succeeded", captured))
        ).status_code == 200
        cancel.mock(
            return_value=httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "payment_intent_unexpected_state",
                    }
                },
            )
        )
        stripe_payins.get(f"/v1/payment_intents/{pi}").mock(
            return_value=httpx.Response(200, json=captured)
        )
        number = int(escrow_id.removeprefix("esc_"))
        await EscrowCaptures(sessionmaker, gateway, settings).submit(number)

        transactions = await escrow_transactions(session, escrow_id)
        assert [(t[0], t[3]) for t in transactions] == [
            ("escrow_authorization", False),
            ("escrow_authorization_captured", True),
            ("escrow_funding_to_wallet", False),
        ]
        assert transactions[2][1] == {
            ("stripe_balance", None): -HOLD,
            ("available", customer): HOLD,
        }
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (HOLD, 0, 0)
        assert await ledger_invariants(session) == []
