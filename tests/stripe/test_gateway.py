"""The gateway over stripe-python's httpx client, mocked at the HTTP layer with respx."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from payments_api.stripe.errors import (
    CardDeclined,
    PaymentProviderError,
    PaymentProviderUnavailable,
    ProviderObjectMissing,
)
from payments_api.stripe.gateway import (
    STRIPE_API_VERSION,
    InvalidWebhookSignature,
    StripeGateway,
    verify_webhook_signature,
)
from tests.helpers import stripe_object, stripe_signature


def _stripe_error(status: int, error_type: str, **extra: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"type": error_type, "message": "Stripe's own words 4242", **extra}},
    )


class TestStripeGateway:
    async def test_create_customer_sends_form_and_idempotency_key(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_mock.post("/v1/customers").mock(
            return_value=httpx.Response(200, json=stripe_object("customer"))
        )
        customer = await gateway.create_customer(
            user_id="u1", email="u1@example.com", idempotency_key="customer:u1"
        )
        assert customer.id.startswith("cus_")
        request = route.calls.last.request
        assert request.headers["Idempotency-Key"] == "customer:u1"
        assert request.headers["Stripe-Version"] == STRIPE_API_VERSION
        assert request.headers["Authorization"] == "Bearer sk_test_123"
        form = parse_qs(request.content.decode())
        assert form == {"metadata[user_id]": ["u1"], "email": ["u1@example.com"]}

    async def test_connected_account_header(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=stripe_object("balance"))
        )
        balance = await gateway.retrieve_balance(stripe_account="acct_123")
        assert [(a.amount, a.currency) for a in balance.available] == [(0, "usd")]
        assert route.calls.last.request.headers["Stripe-Account"] == "acct_123"

    async def test_card_declined_is_402_without_stripe_text(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.post("/v1/customers").mock(
            return_value=_stripe_error(
                402, "card_error", code="card_declined", decline_code="insufficient_funds"
            )
        )
        with pytest.raises(CardDeclined) as caught:
            await gateway.create_customer(user_id="u", email=None, idempotency_key="k")
        assert caught.value.status == 402
        assert caught.value.extensions["decline_code"] == "insufficient_funds"
        assert "4242" not in caught.value.detail

    @pytest.mark.parametrize("status", [429, 500, 503])
    async def test_unavailable_is_503_with_retry_after(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter, status: int
    ) -> None:
        error_type = "rate_limit_error" if status == 429 else "api_error"
        stripe_mock.post("/v1/customers").mock(return_value=_stripe_error(status, error_type))
        with pytest.raises(PaymentProviderUnavailable) as caught:
            await gateway.create_customer(user_id="u", email=None, idempotency_key="k")
        assert caught.value.status == 503
        assert caught.value.headers["Retry-After"]
        assert "4242" not in caught.value.detail

    async def test_connection_error_is_503(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.post("/v1/customers").mock(side_effect=httpx.ConnectTimeout("slow"))
        with pytest.raises(PaymentProviderUnavailable):
            await gateway.create_customer(user_id="u", email=None, idempotency_key="k")

    async def test_invalid_request_is_502(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.post("/v1/customers").mock(
            return_value=_stripe_error(400, "invalid_request_error", param="email")
        )
        with pytest.raises(PaymentProviderError) as caught:
            await gateway.create_customer(user_id="u", email=None, idempotency_key="k")
        assert caught.value.status == 502
        assert "4242" not in caught.value.detail

    async def test_retries_reuse_the_idempotency_key(
        self, settings: object, stripe_mock: respx.MockRouter
    ) -> None:
        from payments_api.settings import Settings

        assert isinstance(settings, Settings)
        gateway = StripeGateway(settings.model_copy(update={"stripe_max_network_retries": 2}))
        route = stripe_mock.post("/v1/customers").mock(
            side_effect=[
                httpx.Response(500, json={"error": {"type": "api_error"}}),
                httpx.Response(200, json=stripe_object("customer")),
            ]
        )
        try:
            await gateway.create_customer(user_id="u", email=None, idempotency_key="customer:u")
        finally:
            await gateway.aclose()
        keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
        assert route.call_count == 2
        assert keys == {"customer:u"}


class TestWebhookSignature:
    payload = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()

    def test_valid_signature(self) -> None:
        header = stripe_signature(self.payload, "whsec_a")
        verify_webhook_signature(self.payload, header, ["whsec_a"], 300)

    def test_any_secret_during_rotation(self) -> None:
        header = stripe_signature(self.payload, "whsec_new")
        verify_webhook_signature(self.payload, header, ["whsec_old", "whsec_new"], 300)

    @pytest.mark.parametrize(
        ("payload", "header_secret", "age"),
        [
            (payload + b" ", "whsec_a", 0),  # body changed after signing
            (payload, "whsec_other", 0),  # wrong secret
            (payload, "whsec_a", 301),  # outside the 300 s tolerance
        ],
    )
    def test_rejected(self, payload: bytes, header_secret: str, age: int) -> None:
        header = stripe_signature(self.payload, header_secret, int(time.time()) - age)
        with pytest.raises(InvalidWebhookSignature):
            verify_webhook_signature(payload, header, ["whsec_a"], 300)

    def test_missing_header(self) -> None:
        with pytest.raises(InvalidWebhookSignature):
            verify_webhook_signature(self.payload, None, ["whsec_a"], 300)


class TestMisfitAnswers:
    async def test_a_transfer_answer_without_its_id_is_a_502(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        transfer = stripe_object("transfer")
        del transfer["id"]
        stripe_mock.post("/v1/transfers").mock(return_value=httpx.Response(200, json=transfer))
        with pytest.raises(PaymentProviderError) as raised:
            await gateway.create_transfer(
                {"amount": 100, "currency": "usd", "destination": "acct_1"},
                idempotency_key="withdrawal:1",
            )
        assert raised.value.status == 502
        assert raised.value.detail == "The payment provider answered unexpectedly."

    async def test_a_payout_page_with_a_payout_of_no_status_is_a_502(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        payout = {**stripe_object("payout"), "status": None}
        stripe_mock.get("/v1/payouts").mock(
            return_value=httpx.Response(
                200, json={"object": "list", "data": [payout], "has_more": False}
            )
        )
        with pytest.raises(PaymentProviderError) as raised:
            await gateway.list_payouts(stripe_account="acct_1", limit=20, status=None)
        assert raised.value.status == 502

    async def test_a_card_refusal_carries_the_typed_payment_intent(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        intent = {**stripe_object("payment_intent"), "status": "requires_payment_method"}
        stripe_mock.post("/v1/payment_intents").mock(
            return_value=_stripe_error(
                402,
                "card_error",
                code="card_declined",
                decline_code="insufficient_funds",
                payment_intent=intent,  # type: ignore[arg-type]
            )
        )
        confirmed = await gateway.create_confirmed_payment_intent(
            {"amount": 1_000, "currency": "usd", "confirm": True}, idempotency_key="pi:1"
        )
        assert (confirmed.intent.id, confirmed.intent.status) == (
            intent["id"],
            "requires_payment_method",
        )
        assert (confirmed.decline_code, confirmed.error_code) == (
            "insufficient_funds",
            "card_declined",
        )


class TestIdsTheClientGave:
    async def test_an_unknown_list_cursor_is_the_clients_422(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_mock.get("/v1/payouts").mock(
            return_value=_stripe_error(
                400, "invalid_request_error", code="resource_missing", param="starting_after"
            )
        )
        with pytest.raises(ProviderObjectMissing) as raised:
            await gateway.list_payouts(
                stripe_account="acct_1", limit=20, status=None, starting_after="po_0"
            )
        assert raised.value.status == 422
        assert raised.value.extensions == {"param": "starting_after"}
        assert route.calls.last.request.url.params["starting_after"] == "po_0"
        assert route.calls.last.request.headers["Stripe-Account"] == "acct_1"

    async def test_an_unknown_id_stripe_was_not_given_by_the_client_stays_a_502(
        self, gateway: StripeGateway, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.get("/v1/payouts").mock(
            return_value=_stripe_error(
                400, "invalid_request_error", code="resource_missing", param="destination"
            )
        )
        with pytest.raises(PaymentProviderError) as raised:
            await gateway.list_payouts(stripe_account="acct_1", limit=20, status=None)
        assert not isinstance(raised.value, ProviderObjectMissing)
        assert raised.value.status == 502
