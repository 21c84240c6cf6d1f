"""SPEC 8 in a real browser: a top-up paid on the sandbox's hosted Checkout page.

The API returns a Checkout URL; headless Chromium opens it and presses Pay; the sandbox
sends the browser back to the frontend's success URL; the wallet is credited by the
signed webhook the sandbox delivers after the commit (not by the redirect); a screenshot
of the paid Checkout page is kept in test-artifacts/ for people to look at.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
from playwright.async_api import Route, async_playwright, expect

from payments_api.settings import Settings
from tests.browser.conftest import ARTIFACTS, CHROMIUM_ARGS, Service
from tests.helpers import make_token

AMOUNT = 4_200
CURRENCY = "usd"
CREDIT_TIMEOUT_SECONDS = 15.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _frontend_origin() -> str:
    """The first default frontend origin (e.g. a local frontend dev server): Checkout
    may only send the browser back there. The browser's requests to it are answered by
    the test (no frontend runs)."""
    default = Settings.model_fields["frontend_origins"].get_default(call_default_factory=True)
    origins: list[str] = list(default)
    return origins[0].rstrip("/")


async def _frontend_page(route: Route) -> None:
    await route.fulfill(
        status=200,
        content_type="text/html",
        body="<!doctype html><h1>Frontend: back from Checkout</h1>",
    )


async def _available(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/me/balance", headers=headers)
    assert response.status_code == 200, response.text
    for entry in response.json()["balances"]:
        if entry["currency"] == CURRENCY:
            return int(entry["available"])
    return 0


async def _wait_for_credit(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    """The balance once it shows the top-up, or as it is when the time is up."""
    deadline = time.monotonic() + CREDIT_TIMEOUT_SECONDS
    while True:
        available = await _available(client, headers)
        if available == AMOUNT or time.monotonic() > deadline:
            return available
        await asyncio.sleep(0.25)


class TestSandboxCheckoutInBrowser:
    async def test_pay_on_the_checkout_page_credits_the_wallet(
        self, chromium: Path, service: Service
    ) -> None:
        user = f"browser_{uuid.uuid4().hex[:12]}"
        token = make_token(user, ["customer"], secret=service.jwt_secret)
        headers = {"Authorization": f"Bearer {token}"}
        frontend = _frontend_origin()
        screenshot = ARTIFACTS / "sandbox-checkout.png"
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot.unlink(missing_ok=True)

        async with httpx.AsyncClient(
            base_url=service.base_url, trust_env=False, timeout=10.0
        ) as client:
            ready = (await client.get("/readyz")).json()
            assert ready["stripe"] == "sandbox"
            created = await client.post(
                "/api/v1/checkout/sessions",
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                json={
                    "purpose": "topup",
                    "amount": AMOUNT,
                    "currency": CURRENCY,
                    "success_url": f"{frontend}/wallet?checkout={{CHECKOUT_SESSION_ID}}",
                    "cancel_url": f"{frontend}/wallet",
                },
            )
            assert created.status_code in (200, 201), created.text
            url: str = created.json()["url"]
            assert url.startswith(f"{service.base_url}/sandbox/checkout/cs_test_")
            session_id = url.rsplit("/", 1)[1]
            assert await _available(client, headers) == 0

            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page(viewport={"width": 1000, "height": 700})
                    page.set_default_timeout(10_000)
                    await page.route(f"{frontend}/**", _frontend_page)
                    await page.goto(url)
                    await expect(page.locator(".banner")).to_contain_text("SANDBOX")
                    await expect(page.locator(".amount")).to_contain_text("42.00")

                    await page.get_by_role("button", name="Pay", exact=True).click()
                    await page.wait_for_url(f"{frontend}/wallet?checkout={session_id}")

                    available = await _wait_for_credit(client, headers)
                    # The hosted page again, now showing the session paid.
                    await page.goto(url)
                    await expect(page.get_by_text("Paid.")).to_be_visible()
                    await page.screenshot(path=str(screenshot), full_page=True)
                    banner = await page.locator(".banner").inner_text()
                finally:
                    await browser.close()

        assert available == AMOUNT, (
            f"the wallet shows {available}, not {AMOUNT}, {CREDIT_TIMEOUT_SECONDS:.0f} s "
            f"after Pay; service log:\n{service.log_tail()}"
        )
        assert "SANDBOX" in banner
        assert screenshot.is_file()
        assert screenshot.read_bytes()[:8] == PNG_SIGNATURE
