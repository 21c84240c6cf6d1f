"""The sandbox's Stripe API: Stripe's shapes, Stripe's idempotency, Stripe's refusals —
through stripe-python (the real gateway) and as raw HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from payments_api.stripe.errors import CardDeclined, PaymentProviderError
from payments_api.stripe.gateway import StripeGateway
from payments_sandbox import connect_objects
from payments_sandbox.models import SandboxObject
from tests.helpers import stripe_object
from tests.sandbox.helpers import Sandbox

CUSTOMER = ["customer"]


async def count(sandbox: Sandbox, type_: str) -> int:
    async with sandbox.sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(SandboxObject).where(SandboxObject.type == type_)
            )
            or 0
        )


async def paid_charge(sandbox: Sandbox, amount: int = 10_000) -> dict[str, Any]:
    """A succeeded charge on the platform (a PaymentIntent confirmed with a test card)."""
    intent = await sandbox.stripe(
        "POST",
        "/v1/payment_intents",
        {
            "amount": str(amount),
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": "true",
        },
    )
    assert intent.status_code == 200, intent.text
    assert intent.json()["status"] == "succeeded"
    return await sandbox.stripe_object(intent.json()["latest_charge"])


async def new_account(sandbox: Sandbox) -> str:
    created = await sandbox.stripe(
        "POST",
        "/v1/accounts",
        {"type": "express", "capabilities[transfers][requested]": "true"},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


class TestAuthentication:
    async def test_a_request_without_a_test_key_is_refused(self, sandbox: Sandbox) -> None:
        missing = await sandbox.client.post("/sandbox/stripe/v1/customers")
        live = await sandbox.stripe("POST", "/v1/customers", api_key="sk_live_123")

        for response in (missing, live):
            assert response.status_code == 401
            assert error_of(response)["type"] == "invalid_request_error"
        assert await count(sandbox, "customer") == 0


class TestShapes:
    async def test_objects_have_stripes_field_names(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        """Every object the sandbox makes has exactly the fields of Stripe's own example."""
        customer = await sandbox_gateway.create_customer(
            user_id="u1", email="u1@example.com", idempotency_key="customer:u1"
        )
        assert customer.id.startswith("cus_")
        assert (await sandbox.stripe_object(customer.id))["metadata"] == {"user_id": "u1"}
        await paid_charge(sandbox)
        account = await new_account(sandbox)
        link = await sandbox.stripe(
            "POST",
            "/v1/account_links",
            {
                "account": account,
                "type": "account_onboarding",
                "refresh_url": "http://testserver/r",
                "return_url": "http://testserver/x",
            },
        )
        assert link.status_code == 200
        for type_, template in [
            ("customer", "customer"),
            ("payment_intent", "payment_intent"),
            ("charge", "charge"),
            ("balance_transaction", "balance_transaction"),
            ("account", "account"),
        ]:
            for body in await sandbox.objects_of(type_):
                assert set(body) == set(stripe_object(template)), type_
        assert set(link.json()) == set(stripe_object("account_link"))

    async def test_charge_with_its_balance_transaction_expanded(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        charge = await paid_charge(sandbox, 10_000)

        read = await sandbox_gateway.retrieve_charge_with_fee(charge["id"])
        raw = await sandbox.stripe(
            "GET", f"/v1/charges/{charge['id']}", {"expand[]": "balance_transaction"}
        )

        assert read.id == charge["id"]
        assert read.balance_transaction is not None
        assert (read.balance_transaction.fee, read.balance_transaction.currency) == (320, "usd")
        transaction = raw.json()["balance_transaction"]
        assert transaction["id"] == read.balance_transaction.id
        assert transaction["id"].startswith("txn_")
        assert (transaction["amount"], transaction["fee"], transaction["net"]) == (
            10_000,
            320,
            9_680,
        )
        assert transaction["fee_details"][0]["type"] == "stripe_fee"
        assert transaction["source"] == charge["id"]

    async def test_lists_page_like_stripe(self, sandbox: Sandbox) -> None:
        for amount in (1_000, 2_000, 3_000):
            await paid_charge(sandbox, amount)

        first = await sandbox.stripe("GET", "/v1/charges", {"limit": "2"})
        rest = await sandbox.stripe(
            "GET", "/v1/charges", {"limit": "2", "starting_after": first.json()["data"][-1]["id"]}
        )

        assert first.json()["object"] == "list"
        assert [c["amount"] for c in first.json()["data"]] == [3_000, 2_000]
        assert first.json()["has_more"] is True
        assert [c["amount"] for c in rest.json()["data"]] == [1_000]
        assert rest.json()["has_more"] is False

    async def test_unknown_parameters_and_routes_are_refused(self, sandbox: Sandbox) -> None:
        typo = await sandbox.stripe("POST", "/v1/customers", {"emial": "x@example.com"})
        nowhere = await sandbox.stripe("GET", "/v1/subscriptions")

        assert typo.status_code == 400
        assert (error_of(typo)["code"], error_of(typo)["param"]) == ("parameter_unknown", "emial")
        assert nowhere.status_code == 404
        assert error_of(nowhere)["type"] == "invalid_request_error"


class TestIdempotency:
    async def test_same_key_and_parameters_replay_the_first_answer(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        key = f"customer:{uuid.uuid4().hex}"
        first = await sandbox_gateway.create_customer(user_id="u1", email=None, idempotency_key=key)
        second = await sandbox_gateway.create_customer(
            user_id="u1", email=None, idempotency_key=key
        )
        raw = await sandbox.stripe("POST", "/v1/customers", {"metadata[user_id]": "u1"}, key=key)

        assert first.id == second.id == raw.json()["id"]
        assert raw.headers["Idempotent-Replayed"] == "true"
        assert await count(sandbox, "customer") == 1

    async def test_same_key_with_other_parameters_is_an_idempotency_error(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        key = f"customer:{uuid.uuid4().hex}"
        await sandbox_gateway.create_customer(user_id="u1", email=None, idempotency_key=key)

        raw = await sandbox.stripe("POST", "/v1/customers", {"metadata[user_id]": "u2"}, key=key)
        with pytest.raises(PaymentProviderError):
            await sandbox_gateway.create_customer(user_id="u2", email=None, idempotency_key=key)

        assert raw.status_code == 400
        assert error_of(raw)["type"] == "idempotency_error"
        assert await count(sandbox, "customer") == 1

    async def test_invalid_parameters_keep_nothing_under_the_key(self, sandbox: Sandbox) -> None:
        bad = await sandbox.stripe("POST", "/v1/transfers", {"amount": "ten"}, key="k-1")
        good = await sandbox.stripe("POST", "/v1/customers", {"email": "a@example.com"}, key="k-1")

        assert bad.status_code == 400
        assert error_of(bad)["message"] == "Invalid integer: ten"
        assert good.status_code == 200
        assert "Idempotent-Replayed" not in good.headers

    async def test_a_refusal_is_kept_and_replayed(self, sandbox: Sandbox) -> None:
        charge = await paid_charge(sandbox, 1_000)
        ask = {"charge": charge["id"], "amount": "1001"}

        first = await sandbox.stripe("POST", "/v1/refunds", ask, key="refund:1")
        again = await sandbox.stripe("POST", "/v1/refunds", ask, key="refund:1")

        assert first.status_code == again.status_code == 400
        assert first.json() == again.json()
        assert again.headers["Idempotent-Replayed"] == "true"

    async def test_keys_are_scoped_per_connected_account(self, sandbox: Sandbox) -> None:
        account = await new_account(sandbox)

        platform = await sandbox.stripe("POST", "/v1/customers", {"name": "a"}, key="same")
        connected = await sandbox.stripe(
            "POST", "/v1/customers", {"name": "b"}, key="same", account=account
        )
        unknown = await sandbox.stripe("GET", "/v1/balance", account="acct_nope")

        assert platform.status_code == connected.status_code == 200
        assert "Idempotent-Replayed" not in connected.headers
        assert platform.json()["id"] != connected.json()["id"]
        assert connected.json()["name"] == "b"
        assert unknown.status_code == 403
        assert error_of(unknown)["code"] == "account_invalid"


class TestRefusals:
    """The sandbox refuses what Stripe refuses for the flows the service uses."""

    async def test_transfer_to_an_account_without_payouts(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        await paid_charge(sandbox, 50_000)
        account = await new_account(sandbox)  # onboarding not done: transfers inactive
        params = {"amount": 1_000, "currency": "usd", "destination": account}

        raw = await sandbox.stripe("POST", "/v1/transfers", {k: str(v) for k, v in params.items()})
        with pytest.raises(PaymentProviderError):
            await sandbox_gateway.create_transfer(params, idempotency_key="withdrawal:1")

        assert raw.status_code == 400
        assert (error_of(raw)["code"], error_of(raw)["param"]) == (
            "insufficient_capabilities_for_transfer",
            "destination",
        )
        assert await count(sandbox, "transfer") == 0

    async def test_transfer_beyond_the_platform_balance(self, sandbox: Sandbox) -> None:
        await paid_charge(sandbox, 1_000)  # net 9.41
        account = await new_account(sandbox)
        async with sandbox.sessionmaker.begin() as session:
            row = await session.get(SandboxObject, account)
            assert row is not None
            row.body = connect_objects.onboarded(row.body, "enabled")

        too_much = await sandbox.stripe(
            "POST", "/v1/transfers", {"amount": "942", "currency": "usd", "destination": account}
        )
        fits = await sandbox.stripe(
            "POST", "/v1/transfers", {"amount": "941", "currency": "usd", "destination": account}
        )
        nowhere = await sandbox.stripe(
            "POST", "/v1/transfers", {"amount": "1", "currency": "usd", "destination": "acct_x"}
        )

        assert too_much.status_code == 400
        assert error_of(too_much)["code"] == "balance_insufficient"
        assert fits.status_code == 200
        assert fits.json()["destination"] == account
        assert (nowhere.status_code, error_of(nowhere)["param"]) == (400, "destination")
        assert error_of(nowhere)["code"] == "resource_missing"

    async def test_refund_above_what_is_left_on_the_charge(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        charge = await paid_charge(sandbox, 1_000)
        intent = charge["payment_intent"]

        part = await sandbox_gateway.create_refund(
            payment_intent=intent,
            amount=600,
            reason=None,
            metadata={"refund_id": "1"},
            idempotency_key="refund:1",
        )
        too_much = await sandbox.stripe(
            "POST", "/v1/refunds", {"charge": charge["id"], "amount": "401"}
        )
        with pytest.raises(PaymentProviderError):
            await sandbox_gateway.create_refund(
                payment_intent=intent,
                amount=401,
                reason=None,
                metadata={},
                idempotency_key="refund:2",
            )
        rest = await sandbox.stripe("POST", "/v1/refunds", {"charge": charge["id"]})
        again = await sandbox.stripe("POST", "/v1/refunds", {"charge": charge["id"]})

        assert (part.amount, part.status) == (600, "succeeded")
        assert too_much.status_code == 400
        assert (error_of(too_much)["code"], error_of(too_much)["param"]) == (
            "amount_too_large",
            "amount",
        )
        assert rest.json()["amount"] == 400
        assert error_of(again)["code"] == "charge_already_refunded"
        listed = await sandbox_gateway.list_refunds(charge=charge["id"])
        assert sorted(r.amount for r in listed) == [400, 600]

    async def test_refund_of_a_disputed_charge(self, sandbox: Sandbox) -> None:
        charge = await paid_charge(sandbox, 1_000)
        await sandbox.click(f"/sandbox/admin/charges/{charge['id']}/dispute", reason="general")

        refused = await sandbox.stripe("POST", "/v1/refunds", {"charge": charge["id"]})

        assert error_of(refused)["code"] == "charge_disputed"

    async def test_declined_card_is_a_card_error(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        params = {
            "amount": 1_000,
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
            "confirm": True,
        }
        with pytest.raises(CardDeclined) as declined:
            await sandbox_gateway.create_payment_intent(params, idempotency_key="pi:1")

        assert declined.value.extensions.get("decline_code") == "insufficient_funds"
        # The failed attempt is recorded (and announced) although the answer was a 402.
        intent = (await sandbox.objects_of("payment_intent"))[-1]
        assert intent["status"] == "requires_payment_method"
        assert intent["last_payment_error"]["decline_code"] == "insufficient_funds"
        assert "payment_intent.payment_failed" in await sandbox.deliver()

    async def test_checkout_rules(self, sandbox: Sandbox) -> None:
        base = {
            "mode": "payment",
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "1000",
            "line_items[0][price_data][product_data][name]": "Top-up",
        }
        soon = await sandbox.stripe("POST", "/v1/checkout/sessions", {**base, "expires_at": "1"})
        no_name = await sandbox.stripe(
            "POST",
            "/v1/checkout/sessions",
            {k: v for k, v in base.items() if "product_data" not in k},
        )
        made = await sandbox.stripe("POST", "/v1/checkout/sessions", base)
        session_id = made.json()["id"]
        expired = await sandbox.stripe("POST", f"/v1/checkout/sessions/{session_id}/expire")
        twice = await sandbox.stripe("POST", f"/v1/checkout/sessions/{session_id}/expire")

        assert error_of(soon)["param"] == "expires_at"
        assert (error_of(no_name)["code"], error_of(no_name)["param"]) == (
            "parameter_missing",
            "line_items[0][price_data][product_data][name]",
        )
        assert made.json()["amount_total"] == 1_000
        assert expired.json()["status"] == "expired"
        assert twice.status_code == 400
        assert error_of(twice)["code"] == "checkout_session_not_open"

    async def test_login_link_before_onboarding(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        account = await new_account(sandbox)

        with pytest.raises(PaymentProviderError):
            await sandbox_gateway.create_login_link(account)

    async def test_a_payment_below_stripes_minimum(self, sandbox: Sandbox) -> None:
        small = await sandbox.stripe(
            "POST", "/v1/payment_intents", {"amount": "49", "currency": "usd"}
        )

        assert (small.status_code, error_of(small)["code"]) == (400, "amount_too_small")


class TestConnectReads:
    async def test_payouts_and_balance_of_a_connected_account(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        await paid_charge(sandbox, 50_000)
        account = await new_account(sandbox)
        async with sandbox.sessionmaker.begin() as session:
            row = await session.get(SandboxObject, account)
            assert row is not None
            row.body = connect_objects.onboarded(row.body, "enabled")
        transfer = await sandbox_gateway.create_transfer(
            {"amount": 2_000, "currency": "usd", "destination": account},
            idempotency_key="withdrawal:7",
        )

        payouts = await sandbox_gateway.list_payouts(stripe_account=account, limit=10, status=None)
        paid = await sandbox_gateway.list_payouts(stripe_account=account, limit=10, status="paid")
        platform = await sandbox_gateway.retrieve_balance()
        connected = await sandbox_gateway.retrieve_balance(stripe_account=account)

        assert transfer.id.startswith("tr_")
        assert [(p.amount, p.status) for p in payouts.data] == [(2_000, "pending")]
        assert payouts.data[0].id.startswith("po_")
        assert paid.data == []
        net = 50_000 - (50_000 * 290 // 10_000 + 30)
        assert [(a.amount, a.currency) for a in platform.available] == [(net - 2_000, "usd")]
        assert (await sandbox.stripe("GET", "/v1/balance")).json()["available"] == [
            {"amount": net - 2_000, "currency": "usd", "source_types": {"card": net - 2_000}}
        ]
        assert connected.available[0].amount == 0  # paid out automatically
        assert (await sandbox.stripe("GET", "/v1/payouts")).json()["data"] == []  # platform

    async def test_a_destination_charge_pays_the_connected_account(self, sandbox: Sandbox) -> None:
        account = await new_account(sandbox)
        async with sandbox.sessionmaker.begin() as session:
            row = await session.get(SandboxObject, account)
            assert row is not None
            row.body = connect_objects.onboarded(row.body, "enabled")
        made = await sandbox.stripe(
            "POST",
            "/v1/checkout/sessions",
            {
                "mode": "payment",
                "line_items[0][quantity]": "1",
                "line_items[0][price_data][currency]": "usd",
                "line_items[0][price_data][unit_amount]": "1000",
                "line_items[0][price_data][product_data][name]": "Tip",
                "payment_intent_data[transfer_data][destination]": account,
                "payment_intent_data[application_fee_amount]": "100",
            },
        )
        assert made.status_code == 200, made.text

        await sandbox.click(f"/sandbox/checkout/{made.json()['id']}", action="pay")

        charge = (await sandbox.objects_of("charge"))[-1]
        transfer = await sandbox.stripe_object(charge["transfer"])
        assert (transfer["amount"], transfer["destination"]) == (900, account)
        assert transfer["source_transaction"] == charge["id"]
        platform = await sandbox.stripe("GET", "/v1/balance")
        assert platform.json()["available"][0]["amount"] == 1_000 - 59 - 900  # fee 2.9%+30

    async def test_refunding_a_destination_charge_reverses_the_transfer_in_proportion(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        account = await new_account(sandbox)
        async with sandbox.sessionmaker.begin() as session:
            row = await session.get(SandboxObject, account)
            assert row is not None
            row.body = connect_objects.onboarded(row.body, "enabled")
        made = await sandbox.stripe(
            "POST",
            "/v1/checkout/sessions",
            {
                "mode": "payment",
                "line_items[0][quantity]": "1",
                "line_items[0][price_data][currency]": "usd",
                "line_items[0][price_data][unit_amount]": "2500",
                "line_items[0][price_data][product_data][name]": "Tip",
                "payment_intent_data[transfer_data][destination]": account,
                "payment_intent_data[application_fee_amount]": "250",
            },
        )
        await sandbox.click(f"/sandbox/checkout/{made.json()['id']}", action="pay")
        charge = (await sandbox.objects_of("charge"))[-1]

        shares = []
        for number, amount in enumerate((333, 333, 1_834)):
            refund = await sandbox_gateway.create_refund(
                payment_intent=charge["payment_intent"],
                amount=amount,
                reason=None,
                metadata={},
                idempotency_key=f"refund:dest:{number}",
                reverse_transfer=True,
                refund_application_fee=True,
            )
            stored = await sandbox.stripe_object(refund.id)
            reversal = await sandbox.stripe_object(stored["transfer_reversal"])
            assert (reversal["transfer"], reversal["source_refund"]) == (
                charge["transfer"],
                refund.id,
            )
            shares.append(reversal["amount"])

        # the payee's share, largest remainder as the ledger splits it: 22.50 in all
        assert shares == [300, 299, 1_651]
        transfer = await sandbox.stripe_object(charge["transfer"])
        assert (transfer["amount_reversed"], transfer["reversed"]) == (2_250, True)
        # paid out automatically, so the reversals left the connected account negative
        connected = await sandbox.stripe("GET", "/v1/balance", account=account)
        assert connected.json()["available"][0]["amount"] == -2_250
        events = await sandbox.deliver()
        assert events.count("transfer.reversed") == 3

    async def test_application_fees_are_not_made_so_none_is_found(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        missing = await sandbox.stripe("GET", "/v1/application_fees/fee_1Nothing")
        assert (missing.status_code, error_of(missing)["code"]) == (404, "resource_missing")
        with pytest.raises(PaymentProviderError):
            await sandbox_gateway.retrieve_application_fee("fee_1Nothing")


class TestDisputeEvidence:
    async def test_winning_evidence_wins_and_closing_loses(self, sandbox: Sandbox) -> None:
        first = await paid_charge(sandbox, 1_000)
        second = await paid_charge(sandbox, 2_000)
        for charge in (first, second):
            await sandbox.click(f"/sandbox/admin/charges/{charge['id']}/dispute", reason="general")
        disputes = {d["charge"]: d["id"] for d in await sandbox.objects_of("dispute")}

        won = await sandbox.stripe(
            "POST",
            f"/v1/disputes/{disputes[first['id']]}",
            {"evidence[uncategorized_text]": "winning_evidence"},
        )
        lost = await sandbox.stripe("POST", f"/v1/disputes/{disputes[second['id']]}/close")
        again = await sandbox.stripe("POST", f"/v1/disputes/{disputes[second['id']]}/close")

        assert (won.json()["status"], won.json()["evidence_details"]["submission_count"]) == (
            "won",
            1,
        )
        assert [t["amount"] for t in won.json()["balance_transactions"]] == [-1_000, 1_000]
        assert lost.json()["status"] == "lost"
        assert again.status_code == 400
        events = await sandbox.deliver()
        assert events.count("charge.dispute.closed") == 2
        assert events.count("charge.dispute.funds_reinstated") == 1


class TestReconciliationReads:
    async def test_balance_transactions_and_undelivered_events_of_a_day(
        self, sandbox: Sandbox, sandbox_gateway: StripeGateway
    ) -> None:
        charge = await paid_charge(sandbox, 10_000)
        await sandbox.stripe("POST", "/v1/refunds", {"charge": charge["id"], "amount": "1000"})
        now = datetime.now(UTC)
        start, end = now - timedelta(hours=1), now + timedelta(hours=1)

        transactions = await sandbox_gateway.list_balance_transactions(
            created_gte=start, created_lt=end
        )
        undelivered = await sandbox_gateway.list_undelivered_events(
            created_gte=start, created_lt=end
        )
        await sandbox.deliver()
        after = await sandbox_gateway.list_undelivered_events(created_gte=start, created_lt=end)
        earlier = await sandbox_gateway.list_balance_transactions(
            created_gte=now - timedelta(days=2), created_lt=now - timedelta(days=1)
        )

        assert [(t.type, t.amount) for t in transactions] == [
            ("refund", -1_000),
            ("charge", 10_000),
        ]
        charge_source, refund_source = transactions[1].source, transactions[0].source
        assert charge_source is not None
        assert refund_source is not None
        assert charge_source.id == charge["id"]
        # expanded: the charge's and the refund's own references came along
        assert charge_source.payment_intent == charge["payment_intent"]
        assert refund_source.charge == charge["id"]
        assert {e.type for e in undelivered} >= {"charge.succeeded", "refund.created"}
        assert after == []
        assert earlier == []

    async def test_a_payment_intent_can_be_canceled_once(self, sandbox: Sandbox) -> None:
        made = await sandbox.stripe(
            "POST", "/v1/payment_intents", {"amount": "1000", "currency": "usd"}
        )
        intent = made.json()["id"]

        canceled = await sandbox.stripe("POST", f"/v1/payment_intents/{intent}/cancel")
        again = await sandbox.stripe("POST", f"/v1/payment_intents/{intent}/cancel")
        page = await sandbox.click(f"/sandbox/payment_intents/{intent}", action="pay")

        assert canceled.json()["status"] == "canceled"
        assert error_of(again)["code"] == "payment_intent_unexpected_state"
        assert page.status_code == 409
        assert await sandbox.deliver() == ["payment_intent.created", "payment_intent.canceled"]
