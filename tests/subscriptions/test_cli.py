"""`payments-api plans sync` pulls every page from Stripe into the configured database."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import respx
from typer.testing import CliRunner

from payments_api.cli import app
from payments_api.settings import get_settings
from tests.conftest import STRIPE_API
from tests.subscriptions.conftest import price, product

REPO = Path(__file__).resolve().parents[2]


def test_plans_sync_command(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.chdir(REPO / "tests")  # no .env from the working tree
    monkeypatch.setenv("PAYMENTS_DATABASE_URL", database_url)
    monkeypatch.setenv("PAYMENTS_STRIPE_SECRET_KEY", "sk_test_123")
    monkeypatch.setenv("PAYMENTS_STRIPE_API_BASE", STRIPE_API)
    monkeypatch.setenv("PAYMENTS_STRIPE_MAX_NETWORK_RETRIES", "0")
    get_settings.cache_clear()
    tag = uuid.uuid4().hex[:8]
    # Archived: the command commits, and other tests list the active plans.
    products = [product(f"prod_{tag}", active=False)]
    prices = [
        price(f"price_{tag}_{n}", 100 * (n + 1), product_id=f"prod_{tag}", active=False)
        for n in range(3)
    ]

    def page(request: httpx.Request) -> httpx.Response:
        items = products if request.url.path == "/v1/products" else prices
        after = request.url.params.get("starting_after")
        start = 0 if after is None else [i["id"] for i in items].index(after) + 1
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": items[start : start + 2],
                "has_more": start + 2 < len(items),
                "url": request.url.path,
            },
        )

    with respx.mock(base_url=STRIPE_API) as mock:
        products_route = mock.get("/v1/products").mock(side_effect=page)
        prices_route = mock.get("/v1/prices").mock(side_effect=page)
        result = CliRunner().invoke(app, ["plans", "sync"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == '{"products":1,"prices":3}'
    assert products_route.call_count == 1
    assert prices_route.call_count == 2
