"""``kit.route_index``: the dispatch that hands a request straight to the included router
holding its route picks what FastAPI's own walk picks, and leaves 404, 405 and routes of
the application itself to that walk."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match

from payments_api.kit import route_index
from payments_api.kit.route_index import IndexedDispatch, route_table
from payments_api.main import create_app
from payments_api.settings import Settings


def _app() -> tuple[FastAPI, list[str]]:
    """Three routers whose paths overlap, so the order decides, and a route of the
    application itself. Each endpoint answers its own name."""
    first, second, third, fourth = APIRouter(), APIRouter(), APIRouter(), APIRouter()

    @first.get("/items/{item_id}")
    async def first_get(item_id: str) -> dict[str, str]:
        return {"endpoint": "first_get", "item_id": item_id}

    @second.get("/items/special")
    async def second_special() -> dict[str, str]:  # shadowed: first_get takes the path
        return {"endpoint": "second_special"}

    @second.post("/items/{item_id}")
    async def second_post(item_id: str) -> dict[str, str]:
        return {"endpoint": "second_post", "item_id": item_id}

    @third.delete("/things/{thing_id}/parts/{part}")
    async def third_delete(thing_id: str, part: str) -> dict[str, str]:
        return {"endpoint": "third_delete", "thing_id": thing_id, "part": part}

    @fourth.get("/{slug}/detail")  # no literal start: tried for every path
    async def fourth_detail(slug: str) -> dict[str, str]:
        return {"endpoint": "fourth_detail", "slug": slug}

    app = FastAPI()
    app.include_router(first)
    app.include_router(second)
    app.include_router(third)
    app.include_router(fourth)

    @app.get("/own")
    async def own() -> dict[str, str]:
        return {"endpoint": "own"}

    route_index.install(app)
    asked: list[str] = []
    # The included routers (FastAPI's own documentation routes come before them).
    branches = [
        route
        for route in app.router.routes
        if not isinstance(route, IndexedDispatch) and not hasattr(route, "path_format")
    ]
    for name, branch in zip(("first", "second", "third", "fourth"), branches, strict=True):
        _count_matches(branch, name, asked)
    return app, asked


def _count_matches(branch: BaseRoute, name: str, asked: list[str]) -> None:
    """Record in ``asked`` each time the router asks ``branch`` whether it takes a
    request ("name"), and each time it hands one over ("name handles")."""
    matches: Callable[[Any], tuple[Match, Any]] = branch.matches
    handle: Callable[..., Awaitable[None]] = branch.handle

    def counting_matches(scope: Any) -> tuple[Match, Any]:
        asked.append(name)
        return matches(scope)

    async def counting_handle(scope: Any, receive: Any, send: Any) -> None:
        asked.append(f"{name} handles")
        await handle(scope, receive, send)

    branch.matches = counting_matches  # type: ignore[method-assign]
    branch.handle = counting_handle  # type: ignore[method-assign]


async def _call(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path)


@pytest.mark.parametrize(
    ("method", "path", "answer", "asked"),
    [
        ("GET", "/items/7", {"endpoint": "first_get", "item_id": "7"}, ["first handles"]),
        (
            "GET",
            "/items/special",
            {"endpoint": "first_get", "item_id": "special"},
            ["first handles"],
        ),
        ("POST", "/items/7", {"endpoint": "second_post", "item_id": "7"}, ["second handles"]),
        (
            "DELETE",
            "/things/a/parts/b",
            {"endpoint": "third_delete", "thing_id": "a", "part": "b"},
            ["third handles"],
        ),
        ("GET", "/items/detail", {"endpoint": "first_get", "item_id": "detail"}, ["first handles"]),
        ("GET", "/zzz/detail", {"endpoint": "fourth_detail", "slug": "zzz"}, ["fourth handles"]),
    ],
)
async def test_a_request_goes_straight_to_the_router_holding_its_route(
    method: str, path: str, answer: dict[str, str], asked: list[str]
) -> None:
    app, asked_routers = _app()
    response = await _call(app, method, path)
    assert (response.status_code, response.json()) == (200, answer)
    assert asked_routers == asked  # handed over: no router was asked whether it takes it


async def test_the_application_s_own_route_404_and_405_are_the_router_s_walk() -> None:
    app, asked = _app()
    assert (await _call(app, "GET", "/own")).json() == {"endpoint": "own"}
    assert asked == ["first", "second", "third", "fourth"]  # walked: the dispatch left it
    assert (await _call(app, "GET", "/nowhere")).status_code == 404
    put = await _call(app, "PUT", "/items/7")
    assert (put.status_code, put.headers["allow"]) == (405, "GET")


def _concrete(path_format: str) -> str:
    return re.sub(r"\{[^}:]+(:path)?\}", lambda m: "a/b" if m.group(1) else "x1", path_format)


def test_the_table_picks_the_branch_fastapi_s_walk_picks_for_every_route_of_the_service() -> None:
    app = create_app()
    table = route_table(app)
    branches = [route for route in app.router.routes if not isinstance(route, IndexedDispatch)]
    checked = 0
    for route in app.routes:
        if isinstance(route, IndexedDispatch):
            continue
        for context in _contexts(route):
            for method in sorted(context.methods or ()):
                path = _concrete(context.path)
                scope = {"type": "http", "method": method, "path": path, "root_path": ""}
                walked = next(
                    (b for b in branches if b.matches(dict(scope))[0] is Match.FULL), None
                )
                entry = table.find(method, path)
                assert entry is not None, f"{method} {path}"
                assert entry.branch is walked, f"{method} {path}"
                checked += 1
    assert checked == sum(len(e.methods or ()) for e in table.entries)


def _contexts(route: BaseRoute) -> list[Any]:
    return [
        context
        for context in iter_route_contexts([route])
        if getattr(context, "path_regex", None) is not None and getattr(context, "methods", None)
    ]


async def test_the_service_s_start_builds_its_table_before_the_first_request(
    settings: Settings,
) -> None:
    app = create_app(settings)
    assert getattr(app.state, "route_table", None) is None
    async with app.router.lifespan_context(app):
        table = app.state.route_table
        entry = table.find("GET", "/api/v1/me/balance")
        assert entry is not None
        assert entry.path_format == "/api/v1/me/balance"
