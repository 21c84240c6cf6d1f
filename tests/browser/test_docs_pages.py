"""`/docs` and `/redoc` render in a real browser with every request outside the service
refused: what an offline machine sees. (tests/test_docs_pages.py checks the HTML and
the served files; this checks that the scripts really draw the pages.)"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Route, async_playwright, expect

from tests.browser.conftest import CHROMIUM_ARGS, Service


class TestDocsPagesOffline:
    async def test_swagger_ui_and_redoc_render_from_local_assets_only(
        self, chromium: Path, service: Service
    ) -> None:
        outside: list[str] = []
        # Console errors other than the policy refusing an outside load (ReDoc's logo).
        errors: list[str] = []

        async def offline(route: Route) -> None:
            if route.request.url.startswith(f"{service.base_url}/"):
                await route.continue_()
            else:
                outside.append(route.request.url)
                await route.abort("internetdisconnected")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(15_000)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on(
                    "console",
                    lambda message: (
                        errors.append(message.text)
                        if message.type == "error" and "Content Security Policy" not in message.text
                        else None
                    ),
                )
                await page.route("**/*", offline)

                await page.goto(f"{service.base_url}/docs")
                # Swagger UI drew the document: its title and an operation of ours. Both
                # viewers render the whole document in the page before anything shows:
                # on a loaded two-core machine that takes longer than expect()'s default
                # 5 s (seen locally, "loading"), so the page's own 15 s apply.
                await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                    "payments-api", timeout=15_000
                )
                await expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)

                await page.goto(f"{service.base_url}/redoc")
                await expect(page.locator("h1").first).to_contain_text(
                    "payments-api", timeout=15_000
                )
                await expect(page.locator("[data-section-id]").first).to_be_attached(timeout=15_000)
            finally:
                await browser.close()
        assert outside == []
        assert errors == []
