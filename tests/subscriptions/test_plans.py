"""Plans: pulled from Stripe (every page), kept current by product/price events."""

from __future__ import annotations

import time
from typing import Any

import httpx
import respx

from tests.helpers import auth
from tests.subscriptions.conftest import price, product, seed_plans, send


def pages(request: httpx.Request, items: list[dict[str, Any]], url: str) -> httpx.Response:
    """Stripe's list pagination: two per page, ``starting_after`` the last id seen."""
    after = request.url.params.get("starting_after")
    start = 0 if after is None else [i["id"] for i in items].index(after) + 1
    data = items[start : start + 2]
    return httpx.Response(
        200,
        json={"object": "list", "data": data, "has_more": start + 2 < len(items), "url": url},
    )


class TestSync:
    async def test_admin_sync_reads_every_page_and_lists_active_plans(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter
    ) -> None:
        products = [
            product("prod_a", family="alpha", name="Alpha"),
            product("prod_b", family="beta", name="Beta"),
            product("prod_c", family="gamma", name="Gamma", active=False),
        ]
        prices = [
            price("price_a_m", 900, product_id="prod_a", credit=300, trial_days=7),
            price("price_a_y", 9000, product_id="prod_a", interval="year"),
            price("price_b_m", 1900, product_id="prod_b"),
            price("price_b_old", 1500, product_id="prod_b", active=False),
            price("price_c_m", 500, product_id="prod_c"),
        ]
        product_route = stripe_mock.get("/v1/products").mock(
            side_effect=lambda r: pages(r, products, "/v1/products")
        )
        price_route = stripe_mock.get("/v1/prices").mock(
            side_effect=lambda r: pages(r, prices, "/v1/prices")
        )
        response = await client.post("/api/v1/admin/plans/sync", headers=auth("ops", ["admin"]))
        assert response.status_code == 200, response.text
        assert response.json() == {"products": 3, "prices": 5}
        assert product_route.call_count == 2
        assert price_route.call_count == 3
        assert price_route.calls[0].request.url.params["type"] == "recurring"
        assert price_route.calls[2].request.url.params["starting_after"] == "price_b_old"

        listed = (await client.get("/api/v1/plans", headers=auth("alice"))).json()["data"]
        by_price = {p["price"]: p for p in listed}
        # archived prices and prices of archived products are not for sale
        assert sorted(by_price) == ["price_a_m", "price_a_y", "price_b_m"]
        monthly = by_price["price_a_m"]
        assert monthly["amount"] == 900
        assert monthly["currency"] == "usd"
        assert monthly["interval"] == "month"
        assert monthly["trial_period_days"] == 7
        assert monthly["monthly_credit"] == 300
        assert monthly["family"] == "alpha"
        assert monthly["features"] == ["Unlimited projects", "Priority support"]
        assert monthly["metadata"] == {"family": "alpha", "monthly_credit": "300"}
        assert by_price["price_a_y"]["monthly_credit"] is None
        assert by_price["price_a_y"]["interval"] == "year"

    async def test_sync_needs_admin(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/admin/plans/sync", headers=auth("alice"))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


class TestEvents:
    async def test_price_and_product_events_keep_plans_current(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter
    ) -> None:
        await seed_plans(client)
        listed = (await client.get("/api/v1/plans", headers=auth("alice"))).json()["data"]
        assert [p["price"] for p in listed] == ["price_basic", "price_trial", "price_pro"]

        now = int(time.time())
        await send(client, "price.updated", price("price_basic", 900, active=False), created=now)
        # an older snapshot arriving late changes nothing
        await send(client, "price.updated", price("price_basic", 900), created=now - 60)
        await send(
            client, "product.updated", product(name="Studio 2", marketing_features=[]), created=now
        )
        listed = (await client.get("/api/v1/plans", headers=auth("alice"))).json()["data"]
        assert [p["price"] for p in listed] == ["price_trial", "price_pro"]
        assert {p["name"] for p in listed} == {"Studio 2"}
        assert listed[0]["features"] == []

    async def test_price_before_its_product_reads_the_product(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_mock.get("/v1/products/prod_new").mock(
            return_value=httpx.Response(200, json=product("prod_new", family="new", name="New"))
        )
        await send(client, "price.created", price("price_new", 700, product_id="prod_new"))
        assert route.call_count == 1
        listed = (await client.get("/api/v1/plans", headers=auth("alice"))).json()["data"]
        assert [(p["price"], p["name"], p["family"]) for p in listed] == [
            ("price_new", "New", "new")
        ]

    async def test_one_time_prices_are_not_plans(self, client: httpx.AsyncClient) -> None:
        await send(client, "product.created", product())
        one_time = price("price_once", 500)
        one_time.update(type="one_time", recurring=None)
        await send(client, "price.created", one_time)
        listed = (await client.get("/api/v1/plans", headers=auth("alice"))).json()["data"]
        assert listed == []
