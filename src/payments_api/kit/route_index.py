"""Which route takes a request, looked up in one flat table instead of FastAPI's walk.

FastAPI keeps each included router as a branch of the application's router. A request
asks every branch in turn whether it takes the request, each branch asks each of its
routes, and the branch that takes it asks them all again to handle it. The more routers
come before the one that answers, the more this costs: for the webhook route (the
twenty-first router) it was about a tenth of a delivery's CPU (bench/README.md).

:class:`RouteTable` lists the application's routes in the order the router tries them:
each route's methods, its path pattern, the literal start of its path, and the
application-level route it belongs to (its branch). The first entry whose pattern and
methods take the request is the route the router would pick, so the branch found is the
one FastAPI's walk would reach. :class:`IndexedDispatch` goes first in the application's
routes and hands the request to that branch directly. Anything else (no route, a path
taken by another method, a route that is not in a branch) it leaves to the router's own
walk, so 404, 405 and every other answer stay FastAPI's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path  # the path the router matches (root_path off)
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from payments_api.kit.idempotency import ONE_TRANSACTION_ATTRIBUTE

BRANCH_SCOPE_KEY = "payments_api.route_branch"
"""Scope entry: the application-level route :class:`IndexedDispatch` matched."""


@dataclass(frozen=True, slots=True)
class RouteEntry:
    methods: frozenset[str] | None
    """None: every method (a mount, a route declared without methods)."""
    path: re.Pattern[str]
    path_format: str
    prefix: str
    """The path's literal start (up to its first parameter): a cheap test before the
    pattern's."""
    branch: BaseRoute
    """The route of the application's router this one is reached through."""
    one_transaction: bool
    """The endpoint is marked ``@one_transaction`` (``kit.idempotency``)."""

    def takes(self, method: str, path: str) -> bool:
        return (
            path.startswith(self.prefix)
            and (self.methods is None or method in self.methods)
            and self.path.match(path) is not None
        )


KEY_SEGMENTS = 3
"""Routes are grouped by up to the first three segments of their path."""


def _template_key(path_format: str) -> tuple[str, ...]:
    """The literal segments every path the template takes starts with (up to
    ``KEY_SEGMENTS``, up to the first one holding a parameter)."""
    key: list[str] = []
    for segment in path_format.split("/", KEY_SEGMENTS + 1)[1 : KEY_SEGMENTS + 1]:
        if "{" in segment:
            break
        key.append(segment)
    return tuple(key)


class RouteTable:
    """The application's routes in the order its router tries them, grouped by the
    literal start of their paths: a request is tried against the routes whose start it
    shares (in their order), not against every route."""

    def __init__(self, entries: list[RouteEntry]) -> None:
        self.entries = entries
        keys = [_template_key(entry.path_format) for entry in entries]
        # A route can take a path only if its key is a prefix of the path's segments,
        # so the group of a key holds the routes whose key is a prefix of it.
        self._groups: dict[tuple[str, ...], list[RouteEntry]] = {
            key: [
                entry
                for entry, entry_key in zip(entries, keys, strict=True)
                if key[: len(entry_key)] == entry_key
            ]
            for key in dict.fromkeys(keys)
        }

    @classmethod
    def of(cls, routes: list[BaseRoute]) -> RouteTable:
        entries: list[RouteEntry] = []
        for branch in routes:
            for route in iter_route_contexts([branch]):
                regex: Any = getattr(route, "path_regex", None)
                path_format = getattr(route, "path", None)
                if regex is None or not isinstance(path_format, str):
                    continue
                methods = getattr(route, "methods", None)
                endpoint: Any = getattr(route, "endpoint", None)
                entries.append(
                    RouteEntry(
                        frozenset(methods) if methods else None,
                        regex,
                        path_format,
                        path_format.split("{", 1)[0],
                        branch,
                        bool(getattr(endpoint, ONE_TRANSACTION_ATTRIBUTE, False)),
                    )
                )
        return cls(entries)

    def find(self, method: str, path: str) -> RouteEntry | None:
        """The route the router runs for this method and path (the first that takes
        both); None when none does (the router's 404 or 405)."""
        segments = tuple(path.split("/", KEY_SEGMENTS + 1)[1 : KEY_SEGMENTS + 1])
        # The longest key the path starts with: its group holds every route that can
        # take the path (no route's key is longer, or it would be found first).
        for length in range(len(segments), -1, -1):
            group = self._groups.get(segments[:length])
            if group is not None:
                for entry in group:
                    if entry.takes(method, path):
                        return entry
                return None
        return None

    def route_of(self, scope: Scope) -> RouteEntry | None:
        """:meth:`find` for an HTTP request's scope."""
        return self.find(scope["method"], get_route_path(scope))


def route_table(app: Any) -> RouteTable:
    """The application's table, built on first use (once every router is in) and kept
    on its state, shared by :class:`IndexedDispatch` and the idempotency middleware."""
    table: RouteTable | None = getattr(app.state, "route_table", None)
    if table is None:
        table = RouteTable.of(list(app.router.routes))
        app.state.route_table = table
    return table


class IndexedDispatch(BaseRoute):
    """The application router's first route: takes an HTTP request whose route sits in
    a branch (an included router) and hands it to that branch, which the router would
    have reached after asking every branch before it. Declares nothing (no path, no
    OpenAPI operation)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        entry = route_table(self.app).route_of(scope)
        # A route of the application router itself (no branch) has a path template the
        # router reports on its own way: left to the router, as is anything unmatched.
        # (This route is never in the table: it has no path.)
        if entry is None or hasattr(entry.branch, "path_format"):
            return Match.NONE, {}
        # Not asked again (``entry.branch.matches``): a branch's match adds nothing to
        # the scope, and handling the request matches its routes once more anyway.
        return Match.FULL, {BRANCH_SCOPE_KEY: entry.branch}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        branch: BaseRoute = scope.pop(BRANCH_SCOPE_KEY)
        await branch.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)


def install(app: Any) -> None:
    """Put :class:`IndexedDispatch` first in the application's routes (after every
    router is included)."""
    app.router.routes.insert(0, IndexedDispatch(app))
