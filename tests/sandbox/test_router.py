"""Where the sandbox exists (only without a Stripe key), how it says so, and the
background delivery it starts with the service."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from payments_api.auth import TokenVerifier
from payments_api.main import create_app
from payments_api.migrations import head_revisions
from payments_api.settings import Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from tests.sandbox.helpers import Sandbox

SANDBOX_PATHS = [
    ("GET", "/sandbox/"),
    ("GET", "/sandbox/admin"),
    ("GET", "/sandbox/checkout/cs_test_a1x"),
    ("POST", "/sandbox/stripe/v1/customers"),
    ("GET", "/sandbox/stripe/v1/balance"),
]


class TestOnlyWithoutAKey:
    @pytest.mark.parametrize(("method", "path"), SANDBOX_PATHS)
    async def test_a_real_key_switches_the_sandbox_off(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(
            method, path, headers={"Authorization": "Bearer sk_test_sandbox_offline"}
        )

        assert response.status_code == 404
        assert "SANDBOX" not in response.text

    async def test_the_gateway_points_at_the_sandbox_only_without_a_key(
        self, sandbox_settings: Settings, settings: Settings
    ) -> None:
        from payments_api.settings import stripe_api_base

        assert stripe_api_base(sandbox_settings) == "http://testserver/sandbox/stripe"
        assert stripe_api_base(settings) == "https://api.stripe.com"


class TestPagesSayTheyAreASandbox:
    async def test_every_page_is_labelled(self, sandbox: Sandbox) -> None:
        checkout = await sandbox.start_checkout("labels", 2_000)
        intent = await sandbox.api(
            "POST",
            "/api/v1/topups",
            "labels",
            ["customer"],
            json={"amount": 2_000, "currency": "usd"},
        )
        account = await sandbox.onboard("labels_payee")
        pages = [
            "/sandbox/",
            "/sandbox/admin",
            f"/sandbox/checkout/{checkout['id']}",
            f"/sandbox/checkout/{checkout['id']}/authenticate",
            f"/sandbox/payment_intents/{intent.json()['payment_intent_id']}",
            f"/sandbox/dashboard/{account}",
        ]

        for path in pages:
            response = await sandbox.client.get(path)
            assert response.status_code == 200, path
            assert "SANDBOX" in response.text, path
            assert response.headers["content-type"].startswith("text/html")
        admin = (await sandbox.client.get("/sandbox/")).text
        for shown in (checkout["id"], account, "account.updated", "/api/v1/webhooks/stripe"):
            assert shown in admin

    async def test_unknown_objects_are_404_pages(self, sandbox: Sandbox) -> None:
        for path in (
            "/sandbox/checkout/cs_test_a1nope",
            "/sandbox/payment_intents/pi_nope",
            "/sandbox/dashboard/acct_nope",
            "/sandbox/onboarding/acct_nope?link=x",
        ):
            response = await sandbox.client.get(path)
            assert response.status_code == 404, path
            assert "SANDBOX" in response.text

    async def test_page_text_is_escaped(self, sandbox: Sandbox) -> None:
        made = await sandbox.stripe(
            "POST",
            "/v1/checkout/sessions",
            {
                "mode": "payment",
                "line_items[0][quantity]": "1",
                "line_items[0][price_data][currency]": "usd",
                "line_items[0][price_data][unit_amount]": "1000",
                "line_items[0][price_data][product_data][name]": "<script>x</script>",
            },
        )

        page = await sandbox.client.get(f"/sandbox/checkout/{made.json()['id']}")

        assert "<script>x</script>" not in page.text
        assert "&lt;script&gt;x&lt;/script&gt;" in page.text

    async def test_admin_page_escapes_what_stripe_callers_sent(self, sandbox: Sandbox) -> None:
        made = await sandbox.stripe(
            "POST",
            "/v1/payment_intents",
            {"amount": "1500", "currency": "usd", "metadata[note]": "<b onclick=x>hi</b>"},
        )
        assert made.status_code == 200, made.text

        admin = await sandbox.client.get("/sandbox/")

        assert "<b onclick=x>" not in admin.text
        assert "&lt;b onclick=x&gt;hi&lt;/b&gt;" in admin.text


def _app(settings: Settings, engine: AsyncEngine) -> FastAPI:
    app = create_app(settings)
    app.state.resources = AppState(
        settings=settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        stripe=StripeGateway(settings),
        verifier=TokenVerifier(settings),
        migration_heads=frozenset(head_revisions()),
    )
    return app


class TestLifespan:
    async def test_sandbox_mode_starts_its_jobs_and_says_so(
        self, sandbox_settings: Settings, engine: AsyncEngine
    ) -> None:
        app = _app(sandbox_settings, engine)  # configures logging: listen after it
        records: list[logging.LogRecord] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        handler = Collect()
        logger = logging.getLogger("payments_sandbox.router")
        logger.addHandler(handler)
        try:
            async with app.router.lifespan_context(app):
                assert app.state.sandbox_worker.running  # its pgqueuer consumer
        finally:
            logger.removeHandler(handler)
            await app.state.resources.stripe.aclose()
        assert app.state.sandbox_worker is None
        warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
        assert any(m.startswith("SANDBOX") and "/sandbox/" in m for m in warnings)

    async def test_with_a_key_nothing_starts(self, settings: Settings, engine: AsyncEngine) -> None:
        app = _app(settings, engine)
        async with app.router.lifespan_context(app):
            assert getattr(app.state, "sandbox_worker", None) is None
        await app.state.resources.stripe.aclose()
