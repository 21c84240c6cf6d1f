"""Stripe as respx answers it for saved cards: customers, SetupIntents, PaymentMethods."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import make_event, signed_webhook, stripe_object
from tests.orders.conftest import payment_intent_response


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


@dataclass
class FakeStripeCards:
    """PaymentMethods Stripe knows, by id, and what was detached."""

    mock: respx.MockRouter
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    detached: list[str] = field(default_factory=list)

    def card(
        self,
        pm_id: str,
        *,
        customer: str | None,
        fingerprint: str = "fpAAA",
        last4: str = "4242",
        brand: str = "visa",
        **card: Any,
    ) -> dict[str, Any]:
        method = stripe_object("payment_method")
        method.update(id=pm_id, customer=customer)
        method["card"].update(
            fingerprint=fingerprint,
            last4=last4,
            brand=brand,
            display_brand=brand,
            exp_month=12,
            exp_year=2031,
            **card,
        )
        self.methods[pm_id] = method
        return method


def customer_response(request: httpx.Request) -> httpx.Response:
    customer = stripe_object("customer")
    key = request.headers.get("Idempotency-Key", "")
    customer["id"] = "cus_" + hashlib.sha256(key.encode()).hexdigest()[:14]
    return httpx.Response(200, json=customer)


def setup_intent_response(request: httpx.Request) -> httpx.Response:
    form = form_of(request)
    intent = stripe_object("setup_intent")
    key = request.headers.get("Idempotency-Key", "")
    seti = "seti_" + hashlib.sha256(key.encode()).hexdigest()[:14]
    intent.update(
        id=seti,
        client_secret=f"{seti}_secret_xyz",
        customer=form["customer"],
        usage=form["usage"],
        metadata={k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        status="requires_payment_method",
        last_setup_error=None,
        next_action=None,
    )
    return httpx.Response(200, json=intent)


@pytest.fixture
def stripe_cards(stripe_mock: respx.MockRouter) -> FakeStripeCards:
    fake = FakeStripeCards(stripe_mock)

    def retrieve(request: httpx.Request, pm_id: str) -> httpx.Response:
        method = fake.methods.get(pm_id)
        if method is None:
            return httpx.Response(
                404,
                json={"error": {"type": "invalid_request_error", "code": "resource_missing"}},
            )
        return httpx.Response(200, json=method)

    def detach(request: httpx.Request, pm_id: str) -> httpx.Response:
        method = fake.methods.get(pm_id)
        if method is None or method.get("customer") is None:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "payment_method_unexpected_state",
                        "message": "The payment method you provided is not attached to a "
                        "customer so detachment is impossible.",
                    }
                },
            )
        method["customer"] = None
        fake.detached.append(pm_id)
        return httpx.Response(200, json=method)

    stripe_mock.post("/v1/customers", name="customers").mock(side_effect=customer_response)
    stripe_mock.post("/v1/setup_intents", name="setup_intents").mock(
        side_effect=setup_intent_response
    )
    stripe_mock.get(path__regex=r"^/v1/payment_methods/(?P<pm_id>[^/]+)$", name="pm_get").mock(
        side_effect=retrieve
    )
    stripe_mock.post(
        path__regex=r"^/v1/payment_methods/(?P<pm_id>[^/]+)/detach$", name="pm_detach"
    ).mock(side_effect=detach)
    stripe_mock.post("/v1/payment_intents", name="intents").mock(
        side_effect=payment_intent_response
    )
    return fake


def setup_succeeded_event(
    setup_intent_id: str, *, customer: str, user_id: str, payment_method: str
) -> dict[str, Any]:
    intent = stripe_object("setup_intent")
    intent.update(
        id=setup_intent_id,
        customer=customer,
        payment_method=payment_method,
        status="succeeded",
        usage="off_session",
        metadata={"user_id": user_id, "setup_id": "1"},
        last_setup_error=None,
        next_action=None,
    )
    return make_event("setup_intent.succeeded", intent)


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    return await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
