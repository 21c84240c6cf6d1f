"""The payout-account contract through the HTTP API, Stripe answered by respx."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry
from payments_api.payout_accounts.links import REFRESH_PATH, RETURN_PATH, LinkState, sign_state
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.payout_accounts.webhook_handlers import HANDLERS
from payments_api.settings import Settings
from payments_api.webhooks.registry import HandlerContext
from tests.factories import create_user
from tests.helpers import auth, stripe_key
from tests.payout_accounts import shapes
from tests.payout_accounts.conftest import Payee

ME = "/api/v1/me/payout-account"
ONBOARDING = f"{ME}/onboarding-link"
DASHBOARD = f"{ME}/dashboard-link"


def _form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def _mock_creation(
    stripe_mock: respx.MockRouter, payee: Payee, *links: str
) -> tuple[respx.Route, respx.Route]:
    accounts = stripe_mock.post("/v1/accounts").mock(
        return_value=httpx.Response(200, json=shapes.fresh_account(payee.account_id, payee.id))
    )
    urls = links or ("https://connect.stripe.com/setup/e/first",)
    account_links = stripe_mock.post("/v1/account_links").mock(
        side_effect=[httpx.Response(200, json=shapes.account_link(url)) for url in urls]
    )
    return accounts, account_links


async def _onboard(
    client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
) -> dict[str, Any]:
    _mock_creation(stripe_mock, payee)
    response = await client.post(ONBOARDING, headers=payee.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _deliver(context: HandlerContext, account: dict[str, Any], created: int) -> None:
    await HANDLERS["account.updated"](shapes.account_updated(account, created=created), context)


class TestOnboardingFlow:
    async def test_not_started_then_pending_then_enabled_by_webhook(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        handler_context: HandlerContext,
    ) -> None:
        before = await client.get(ME, headers=payee.headers)
        assert before.status_code == 200
        assert before.json() == {
            "payout_account": {
                "status": "not_started",
                "setup_complete": False,
                "status_reason": None,
                "stripe_account_id": None,
                "charges_enabled": False,
                "payouts_enabled": False,
                "requirements_currently_due": [],
                "requirements_past_due": [],
            }
        }

        accounts, account_links = _mock_creation(
            stripe_mock, payee, "https://connect.stripe.com/setup/e/one"
        )
        response = await client.post(ONBOARDING, headers=payee.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["url"] == "https://connect.stripe.com/setup/e/one"
        assert body["expires_at"] is not None
        assert body["payout_account"] == {
            "status": "pending",
            "setup_complete": False,
            "status_reason": "requirements_due",
            "stripe_account_id": payee.account_id,
            "charges_enabled": False,
            "payouts_enabled": False,
            "requirements_currently_due": shapes.ONBOARDING_DUE,
            "requirements_past_due": [],
        }

        create = accounts.calls.last.request
        assert create.headers["Idempotency-Key"] == stripe_key("account", payee.id)
        assert _form(create) == {
            "type": ["express"],
            "metadata[user_id]": [payee.id],
            "capabilities[card_payments][requested]": ["true"],
            "capabilities[transfers][requested]": ["true"],
        }
        link_form = _form(account_links.calls.last.request)
        assert link_form["account"] == [payee.account_id]
        assert link_form["type"] == ["account_onboarding"]
        assert link_form["refresh_url"][0].startswith(f"http://127.0.0.1:8000{REFRESH_PATH}?state=")
        assert link_form["return_url"][0].startswith(f"http://127.0.0.1:8000{RETURN_PATH}?state=")

        retrieve = stripe_mock.get(f"/v1/accounts/{payee.account_id}")
        pending = await client.get(ME, headers=payee.headers)
        assert pending.json()["payout_account"]["status"] == "pending"
        assert not retrieve.called  # fresh state: no Stripe read

        await _deliver(
            handler_context,
            shapes.enabled_account(payee.account_id, payee.id),
            created=int(time.time()) + 5,
        )
        enabled = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert enabled == {
            "status": "enabled",
            "setup_complete": True,
            "status_reason": None,
            "stripe_account_id": payee.account_id,
            "charges_enabled": True,
            "payouts_enabled": True,
            "requirements_currently_due": [],
            "requirements_past_due": [],
        }
        assert accounts.call_count == 1

    async def test_every_call_mints_a_new_link_and_reuses_the_account(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        accounts, account_links = _mock_creation(
            stripe_mock,
            payee,
            "https://connect.stripe.com/setup/e/1",
            "https://connect.stripe.com/setup/e/2",
        )
        first = await client.post(ONBOARDING, headers=payee.headers)
        second = await client.post(ONBOARDING, headers=payee.headers)
        assert first.json()["url"] == "https://connect.stripe.com/setup/e/1"
        assert second.json()["url"] == "https://connect.stripe.com/setup/e/2"
        assert accounts.call_count == 1
        assert account_links.call_count == 2

    async def test_country_is_sent_when_configured(
        self, app_factory: Any, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        accounts, _ = _mock_creation(stripe_mock, payee)
        app = app_factory(connect_account_country="DE", connect_capabilities=["transfers"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(ONBOARDING, headers=payee.headers)
        assert response.status_code == 200, response.text
        form = _form(accounts.calls.last.request)
        assert form["country"] == ["DE"]
        assert "capabilities[card_payments][requested]" not in form
        assert form["capabilities[transfers][requested]"] == ["true"]

    async def test_stripe_failure_creates_nothing(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        session: AsyncSession,
    ) -> None:
        stripe_mock.post("/v1/accounts").mock(
            return_value=httpx.Response(500, json={"error": {"type": "api_error"}})
        )
        response = await client.post(ONBOARDING, headers=payee.headers)
        assert response.status_code == 503
        assert response.json()["code"] == "payment_provider_unavailable"
        assert response.headers["Retry-After"]
        count = await session.scalar(
            select(func.count()).select_from(PayoutAccount).where(PayoutAccount.user_id == payee.id)
        )
        assert count == 0
        after = await client.get(ME, headers=payee.headers)
        assert after.json()["payout_account"]["status"] == "not_started"

    async def test_link_failure_after_creation_is_retried_with_the_same_key(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        accounts = stripe_mock.post("/v1/accounts").mock(
            return_value=httpx.Response(200, json=shapes.fresh_account(payee.account_id, payee.id))
        )
        stripe_mock.post("/v1/account_links").mock(
            side_effect=[
                httpx.Response(500, json={"error": {"type": "api_error"}}),
                httpx.Response(200, json=shapes.account_link("https://connect.stripe.com/ok")),
            ]
        )
        failed = await client.post(ONBOARDING, headers=payee.headers)
        assert failed.status_code == 503
        retried = await client.post(ONBOARDING, headers=payee.headers)
        assert retried.status_code == 200
        assert retried.json()["payout_account"]["stripe_account_id"] == payee.account_id
        keys = {call.request.headers["Idempotency-Key"] for call in accounts.calls}
        assert keys == {stripe_key("account", payee.id)}


class TestStatusSync:
    async def test_restricted_with_stripe_disabled_reason(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        handler_context: HandlerContext,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        await _deliver(
            handler_context,
            shapes.restricted_account(payee.account_id, payee.id, disabled_reason="rejected.fraud"),
            created=int(time.time()) + 1,
        )
        body = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert body["status"] == "restricted"
        assert body["status_reason"] == "rejected.fraud"
        assert body["setup_complete"] is False
        assert body["requirements_past_due"] == ["individual.verification.document"]

    async def test_out_of_order_events_end_in_the_newest_state(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        handler_context: HandlerContext,
        session: AsyncSession,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        t = int(time.time())
        review = shapes.under_review_account(payee.account_id, payee.id)
        enabled = shapes.enabled_account(payee.account_id, payee.id)
        restricted = shapes.restricted_account(payee.account_id, payee.id)
        # Stripe sent review (t+10), enabled (t+20), restricted (t+30); they arrive
        # newest first, then the two older ones.
        await _deliver(handler_context, restricted, created=t + 30)
        await _deliver(handler_context, review, created=t + 10)
        await _deliver(handler_context, enabled, created=t + 20)

        body = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert body["status"] == "restricted"
        assert body["status_reason"] == "requirements.past_due"
        row = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == payee.id))
        assert row is not None
        assert row.stripe_state_at is not None
        assert int(row.stripe_state_at.timestamp()) == t + 30

        # A newer event still applies.
        await _deliver(handler_context, enabled, created=t + 40)
        body = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert body["status"] == "enabled"

    async def test_get_asks_stripe_when_the_stored_state_is_stale(
        self, app_factory: Any, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        app = app_factory(connect_sync_stale_after_seconds=0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await _onboard(client, stripe_mock, payee)
            retrieve = stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
                return_value=httpx.Response(
                    200, json=shapes.restricted_account(payee.account_id, payee.id)
                )
            )
            body = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert retrieve.call_count == 1
        assert body["status"] == "restricted"
        assert body["status_reason"] == "requirements.past_due"

    async def test_an_event_older_than_an_api_read_is_ignored(
        self,
        app_factory: Any,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        handler_context: HandlerContext,
    ) -> None:
        app = app_factory(connect_sync_stale_after_seconds=0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await _onboard(client, stripe_mock, payee)
            stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
                return_value=httpx.Response(
                    200, json=shapes.enabled_account(payee.account_id, payee.id)
                )
            )
            await client.get(ME, headers=payee.headers)
            # An event Stripe created before our read, delivered late.
            await _deliver(
                handler_context,
                shapes.fresh_account(payee.account_id, payee.id),
                created=int(time.time()) - 60,
            )
            stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
                return_value=httpx.Response(500, json={"error": {"type": "api_error"}})
            )
            body = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert body["status"] == "enabled"

    async def test_get_serves_stored_state_when_stripe_is_down(
        self, app_factory: Any, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        app = app_factory(connect_sync_stale_after_seconds=0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await _onboard(client, stripe_mock, payee)
            stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
                return_value=httpx.Response(503, json={"error": {"type": "api_error"}})
            )
            response = await client.get(ME, headers=payee.headers)
        assert response.status_code == 200
        assert response.json()["payout_account"]["status"] == "pending"

    async def test_admin_resync_reads_stripe_and_is_audited(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        session: AsyncSession,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        retrieve = stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
            return_value=httpx.Response(
                200, json=shapes.enabled_account(payee.account_id, payee.id)
            )
        )
        response = await client.post(
            f"/api/v1/admin/payout-accounts/{payee.id}/sync", headers=auth("admin-1", ["admin"])
        )
        assert response.status_code == 200, response.text
        assert response.json()["payout_account"]["status"] == "enabled"
        assert retrieve.call_count == 1
        audit = await session.scalar(
            select(AuditLogEntry).where(AuditLogEntry.action == "payout_account.sync")
        )
        assert audit is not None
        assert audit.actor_id == "admin-1"
        assert audit.target_id == payee.account_id
        assert audit.before is not None
        assert audit.after is not None
        assert audit.before["status"] == "pending"
        assert audit.after["status"] == "enabled"
        mine = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert mine["status"] == "enabled"

    async def test_admin_resync_of_a_user_without_account_is_404(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        response = await client.post(
            f"/api/v1/admin/payout-accounts/{payee.id}/sync", headers=auth("admin-1", ["admin"])
        )
        assert response.status_code == 404
        assert response.json()["code"] == "payout_account_not_found"


class TestDashboardLink:
    async def test_before_setup_started_is_422_payout_setup_incomplete(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        login_links = stripe_mock.post(url__regex=r"/v1/accounts/.+/login_links")
        response = await client.post(DASHBOARD, headers=payee.headers)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "payout_setup_incomplete"
        assert isinstance(body["message"], str)
        assert body["message"]
        assert body["type"].endswith("/payout_setup_incomplete")
        assert body["status"] == 422
        assert body["title"]
        assert not login_links.called

    async def test_onboarding_not_finished_is_422_after_asking_stripe(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        retrieve = stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
            return_value=httpx.Response(200, json=shapes.fresh_account(payee.account_id, payee.id))
        )
        response = await client.post(DASHBOARD, headers=payee.headers)
        assert response.status_code == 422
        assert response.json()["code"] == "payout_setup_incomplete"
        assert retrieve.call_count == 1

    async def test_stored_state_behind_stripe_is_refreshed_before_refusing(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        await _onboard(client, stripe_mock, payee)  # stored: details not submitted
        stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
            return_value=httpx.Response(
                200, json=shapes.enabled_account(payee.account_id, payee.id)
            )
        )
        login_links = stripe_mock.post(f"/v1/accounts/{payee.account_id}/login_links").mock(
            return_value=httpx.Response(
                200, json=shapes.login_link("https://connect.stripe.com/express/c")
            )
        )
        response = await client.post(DASHBOARD, headers=payee.headers)
        assert response.status_code == 200, response.text
        assert response.json()["url"] == "https://connect.stripe.com/express/c"
        assert response.json()["payout_account"]["status"] == "enabled"
        assert login_links.call_count == 1

    async def test_login_link_for_a_set_up_account(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        handler_context: HandlerContext,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        await _deliver(
            handler_context,
            shapes.enabled_account(payee.account_id, payee.id),
            created=int(time.time()) + 1,
        )
        login_links = stripe_mock.post(f"/v1/accounts/{payee.account_id}/login_links").mock(
            side_effect=[
                httpx.Response(200, json=shapes.login_link("https://connect.stripe.com/express/a")),
                httpx.Response(200, json=shapes.login_link("https://connect.stripe.com/express/b")),
            ]
        )
        first = await client.post(DASHBOARD, headers=payee.headers)
        second = await client.post(DASHBOARD, headers=payee.headers)
        assert first.status_code == 200, first.text
        assert first.json()["url"] == "https://connect.stripe.com/express/a"
        assert second.json()["url"] == "https://connect.stripe.com/express/b"
        assert first.json()["payout_account"]["status"] == "enabled"
        assert login_links.call_count == 2
        assert login_links.calls.last.request.url.path == (
            f"/v1/accounts/{payee.account_id}/login_links"
        )


class TestLandingPages:
    async def _state(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> tuple[str, str]:
        _, account_links = _mock_creation(stripe_mock, payee)
        await client.post(ONBOARDING, headers=payee.headers)
        form = _form(account_links.calls.last.request)
        refresh, back = form["refresh_url"][0], form["return_url"][0]
        return (
            f"{urlsplit(refresh).path}?{urlsplit(refresh).query}",
            f"{urlsplit(back).path}?{urlsplit(back).query}",
        )

    async def test_refresh_redirects_to_a_new_link_for_the_same_account(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        refresh, _ = await self._state(client, stripe_mock, payee)
        account_links = stripe_mock.post("/v1/account_links").mock(
            return_value=httpx.Response(
                200, json=shapes.account_link("https://connect.stripe.com/setup/e/again")
            )
        )
        response = await client.get(refresh)  # the browser: no bearer token
        assert response.status_code == 302
        assert response.headers["location"] == "https://connect.stripe.com/setup/e/again"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert _form(account_links.calls.last.request)["account"] == [payee.account_id]

    @pytest.mark.parametrize(
        "token",
        ["", "garbage", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad"],
    )
    async def test_refresh_with_a_bad_state_shows_an_error_page(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, token: str
    ) -> None:
        account_links = stripe_mock.post("/v1/account_links")
        response = await client.get(f"{REFRESH_PATH}?state={token}")
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "expired" in response.text
        assert not account_links.called

    async def test_refresh_with_an_expired_state_shows_an_error_page(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        settings: Settings,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        stripe_mock.reset()
        account_links = stripe_mock.post("/v1/account_links")
        issued = int(time.time()) - settings.connect_link_state_ttl_seconds - 60
        expired = sign_state(settings, LinkState(payee.id, payee.account_id), now=issued)
        response = await client.get(f"{REFRESH_PATH}?state={expired}")
        assert response.status_code == 400
        assert not account_links.called

    async def test_refresh_without_state_is_a_problem(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter
    ) -> None:
        account_links = stripe_mock.post("/v1/account_links")
        response = await client.get(REFRESH_PATH)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "validation_error"
        assert not account_links.called

    async def test_refresh_with_an_empty_state_is_the_expired_link_page(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter
    ) -> None:
        account_links = stripe_mock.post("/v1/account_links")
        response = await client.get(f"{REFRESH_PATH}?state=")
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert not account_links.called

    async def test_refresh_for_another_account_is_refused(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        settings: Settings,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        stripe_mock.reset()
        account_links = stripe_mock.post("/v1/account_links")
        stale = sign_state(settings, LinkState(payee.id, "acct_replaced"))
        response = await client.get(f"{REFRESH_PATH}?state={stale}")
        assert response.status_code == 400
        assert not account_links.called

    async def test_refresh_for_a_user_who_is_no_longer_a_payee_is_refused(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
    ) -> None:
        refresh, _ = await self._state(client, stripe_mock, payee)
        # The platform took the role away; our user row learns it on the next request.
        await client.get("/api/v1/me", headers=auth(payee.id, ["customer"]))
        stripe_mock.reset()
        account_links = stripe_mock.post("/v1/account_links")
        response = await client.get(refresh)
        assert response.status_code == 400
        assert not account_links.called

    async def test_refresh_when_stripe_is_down_shows_a_retry_page(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        refresh, _ = await self._state(client, stripe_mock, payee)
        stripe_mock.post("/v1/account_links").mock(
            return_value=httpx.Response(503, json={"error": {"type": "api_error"}})
        )
        response = await client.get(refresh)
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")

    async def test_return_shows_a_page_and_completes_nothing(
        self,
        app_factory: Any,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        session: AsyncSession,
    ) -> None:
        _, back = await self._state(client, stripe_mock, payee)
        response = await client.get(back)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        row = await session.scalar(
            select(PayoutAccount)
            .where(PayoutAccount.user_id == payee.id)
            .execution_options(populate_existing=True)
        )
        assert row is not None
        assert row.status == "pending"
        assert row.synced_at is None  # the next GET asks Stripe

        retrieve = stripe_mock.get(f"/v1/accounts/{payee.account_id}").mock(
            return_value=httpx.Response(200, json=shapes.fresh_account(payee.account_id, payee.id))
        )
        body = (await client.get(ME, headers=payee.headers)).json()["payout_account"]
        assert retrieve.call_count == 1
        assert body["status"] == "pending"
        assert body["setup_complete"] is False

    async def test_return_redirects_to_the_configured_deep_link(
        self, app_factory: Any, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        app = app_factory(connect_return_url="myapp://payouts/return")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            _, back = await self._state(client, stripe_mock, payee)
            response = await client.get(back)
            invalid = await client.get(f"{RETURN_PATH}?state=forged")
        assert response.status_code == 302
        assert response.headers["location"] == "myapp://payouts/return"
        # Coming back with a broken state is harmless: same landing, nothing recorded.
        assert invalid.status_code == 302


class TestAccess:
    @pytest.mark.parametrize(
        ("method", "path"), [("GET", ME), ("POST", ONBOARDING), ("POST", DASHBOARD)]
    )
    @pytest.mark.parametrize("roles", [["customer"], ["admin"], []])
    async def test_routes_require_the_payee_role(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        method: str,
        path: str,
        roles: list[str],
    ) -> None:
        accounts = stripe_mock.post("/v1/accounts")
        response = await client.request(method, path, headers=auth("not-a-payee", roles))
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "forbidden"
        assert not accounts.called

    @pytest.mark.parametrize(
        ("method", "path"), [("GET", ME), ("POST", ONBOARDING), ("POST", DASHBOARD)]
    )
    async def test_routes_require_a_token(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(method, path)
        assert response.status_code == 401

    async def test_admin_resync_requires_admin(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        response = await client.post(
            f"/api/v1/admin/payout-accounts/{payee.id}/sync", headers=payee.headers
        )
        assert response.status_code == 403

    async def test_each_payee_sees_only_their_own_account(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        session: AsyncSession,
    ) -> None:
        await _onboard(client, stripe_mock, payee)
        other = await create_user(session, id="payee-other", roles=["payee"])
        body = (await client.get(ME, headers=auth(other.id, ["payee"]))).json()
        assert body["payout_account"]["status"] == "not_started"
        assert body["payout_account"]["stripe_account_id"] is None


class TestOpenApi:
    def test_the_contract_is_documented(self, app_factory: Any) -> None:
        spec = app_factory().openapi()
        operations = {
            op["operationId"]: op for item in spec["paths"].values() for op in item.values()
        }
        for operation_id in (
            "getPayoutAccount",
            "createPayoutAccountOnboardingLink",
            "createPayoutAccountDashboardLink",
            "refreshPayoutAccountOnboarding",
            "returnFromPayoutAccountOnboarding",
            "syncPayoutAccount",
        ):
            assert operation_id in operations
        assert "422" in operations["createPayoutAccountDashboardLink"]["responses"]
        schema = spec["components"]["schemas"]["PayoutAccountRead"]
        assert schema["properties"]["status"]["$ref"].endswith("PayoutAccountStatus")
        assert json.dumps(
            spec["components"]["schemas"]["PayoutAccountStatus"]["enum"]
        ) == json.dumps(["not_started", "pending", "enabled", "restricted"])
