"""SPEC 9.3 in a real browser: a top-up that needs 3-D Secure, finished on the sandbox's
hosted authentication page.

The API creates the top-up's PaymentIntent; headless Chromium opens the sandbox's
payment page (what Stripe's SDK does on a phone), pays with a card that needs 3-D
Secure, lands on the hosted "Sandbox Bank" challenge and completes or fails it. The
wallet is credited only by the signed webhook the sandbox delivers afterwards; a failed
challenge leaves the top-up failed and the wallet untouched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright, expect

from tests.browser.conftest import ARTIFACTS, CHROMIUM_ARGS, Service
from tests.helpers import make_token

AMOUNT = 3_100
CURRENCY = "usd"
OUTCOME_TIMEOUT_SECONDS = 15.0


async def _available(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/me/balance", headers=headers)
    assert response.status_code == 200, response.text
    for entry in response.json()["balances"]:
        if entry["currency"] == CURRENCY:
            return int(entry["available"])
    return 0


async def _order_when(
    client: httpx.AsyncClient, headers: dict[str, str], order_id: str, status: str
) -> dict[str, Any]:
    """The order once it has ``status`` (Stripe's event applied), or as it is at the end."""
    deadline = time.monotonic() + OUTCOME_TIMEOUT_SECONDS
    while True:
        response = await client.get(f"/api/v1/orders/{order_id}", headers=headers)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        if order["status"] == status or time.monotonic() > deadline:
            return order
        await asyncio.sleep(0.25)


async def _start_topup(
    client: httpx.AsyncClient, service: Service
) -> tuple[dict[str, str], dict[str, Any]]:
    user = f"browser3ds_{uuid.uuid4().hex[:12]}"
    headers = {
        "Authorization": f"Bearer {make_token(user, ['customer'], secret=service.jwt_secret)}"
    }
    ready = (await client.get("/readyz")).json()
    assert ready["stripe"] == "sandbox"
    created = await client.post(
        "/api/v1/topups",
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        json={"amount": AMOUNT, "currency": CURRENCY},
    )
    assert created.status_code == 201, created.text
    return headers, created.json()


async def _through_the_challenge(
    page: Page, service: Service, payment_intent_id: str, button: str, screenshot: Path
) -> None:
    """Pay on the sandbox's payment page with a 3-D Secure card and press ``button`` on
    the bank's challenge page."""
    await page.goto(f"{service.base_url}/sandbox/payment_intents/{payment_intent_id}")
    await expect(page.locator(".banner")).to_contain_text("SANDBOX")
    await expect(page.locator(".amount")).to_contain_text("31.00")
    await page.get_by_role("button", name="Pay with a card that needs 3-D Secure").click()
    await page.wait_for_url(f"**/sandbox/payment_intents/{payment_intent_id}/authenticate")
    await expect(page.get_by_text("3-D Secure", exact=False).first).to_be_visible()
    await expect(page.locator(".amount")).to_contain_text("31.00")
    await page.screenshot(path=str(screenshot), full_page=True)
    await page.get_by_role("button", name=button, exact=True).click()


class TestThreeDSecureInBrowser:
    async def test_completing_the_challenge_credits_the_top_up(
        self, chromium: Path, service: Service
    ) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "sandbox-3ds-challenge.png"
        async with httpx.AsyncClient(
            base_url=service.base_url, trust_env=False, timeout=10.0
        ) as client:
            headers, topup = await _start_topup(client, service)
            assert topup["status"] == "requires_payment_method"
            assert await _available(client, headers) == 0

            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page(viewport={"width": 1000, "height": 700})
                    page.set_default_timeout(15_000)
                    await _through_the_challenge(
                        page,
                        service,
                        topup["payment_intent_id"],
                        "Complete authentication",
                        screenshot,
                    )
                    await page.wait_for_url(
                        f"**/sandbox/payment_intents/{topup['payment_intent_id']}"
                    )
                    await expect(page.get_by_text("Paid.")).to_be_visible()
                finally:
                    await browser.close()

            order = await _order_when(client, headers, topup["order_id"], "succeeded")
            available = await _available(client, headers)

        assert order["status"] == "succeeded", f"{order}\n{service.log_tail()}"
        assert available == AMOUNT
        assert screenshot.is_file()

    async def test_failing_the_challenge_fails_the_top_up(
        self, chromium: Path, service: Service
    ) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "sandbox-3ds-challenge-failed.png"
        async with httpx.AsyncClient(
            base_url=service.base_url, trust_env=False, timeout=10.0
        ) as client:
            headers, topup = await _start_topup(client, service)

            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page(viewport={"width": 1000, "height": 700})
                    page.set_default_timeout(15_000)
                    await _through_the_challenge(
                        page,
                        service,
                        topup["payment_intent_id"],
                        "Fail authentication",
                        screenshot,
                    )
                    await page.wait_for_url("**declined=payment_intent_authentication_failure")
                    await expect(page.get_by_text("The payment was declined")).to_be_visible()
                finally:
                    await browser.close()

            order = await _order_when(client, headers, topup["order_id"], "failed")
            available = await _available(client, headers)

        assert (order["status"], order["failure_code"]) == (
            "failed",
            "authentication_failed",
        ), f"{order}\n{service.log_tail()}"
        assert available == 0
