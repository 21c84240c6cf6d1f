"""Rate limits per user and per client IP on the API's write routes.

Built on ``limits`` (the library behind slowapi): sliding-window counters (the current
and the previous fixed window, weighted) in a storage chosen by URI — ``memory://``
(per process: with N replicas the effective limit is N times the setting) or a shared
store such as ``async+redis://host:6379``. A request over either limit gets a 429
problem with ``Retry-After`` and is not processed, so it also
takes no Idempotency-Key lease.

Not the moving window: its in-memory storage keeps every hit and, after each one, walks
every key with a thread-pool hop per key to expire old hits, a cost that grows with the
number of users writing (measured in bench/). Two counters per key cost the same for
every request, and the limit is exact to within the previous window's weighting.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Receive, Scope, Send

from payments_api.problems import PROBLEM_MEDIA_TYPE, ProblemError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RateLimited(ProblemError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class SweptMemoryStorage(MemoryStorage):
    """``limits``' asyncio memory storage, sweeping out expired counters at most once
    per ``SWEEP_INTERVAL`` seconds instead of after every hit.

    The library's storage starts a sweep of every key it holds after each hit (once
    the previous sweep is done), so a hit cost CPU in proportion to the users and
    client addresses seen in the last two windows: 23 us per hit with 10 keys, 1.0 ms
    with 10,000, 19 ms with 100,000 (one process, sliding-window counters, limits
    5.8.0); a flood of distinct addresses made every write request slower. With this
    class: 15, 17 and 18 us, and a sweep (the 19 ms, blocking the event loop) every
    ``SWEEP_INTERVAL`` at most. Counting does not depend on the sweep: a counter past
    its expiry is dropped when it is read (``MemoryStorage.get``); the sweep only frees
    the memory of keys nobody uses again, now up to ``SWEEP_INTERVAL`` later.

    The library calls its private ``__schedule_expiry`` from every counting method;
    this class replaces it under its mangled name (``tests/kit/test_ratelimit.py``
    fails if a release renames it).
    """

    SWEEP_INTERVAL = 10.0

    def __init__(
        self,
        uri: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        super().__init__(uri, **options)
        self._clock = clock
        self._next_sweep = -math.inf

    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_INTERVAL
        # The library's own scheduling (a sweep task unless one is running).
        await MemoryStorage._MemoryStorage__schedule_expiry(self)  # type: ignore[attr-defined]


class RateLimitStorageError(RuntimeError):
    """The configured rate-limit store cannot be used: refuse to start, say why."""


def build_storage(storage_uri: str, key_prefix: str = "payments-api") -> Storage:
    """The asyncio storage for ``storage_uri``, built at application start so a missing
    driver or a malformed URI stops the service with a clear message instead of
    failing every request. Keys in a shared store start with ``key_prefix``."""
    # limits names its asyncio storages "async+<scheme>://".
    uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
    if uri.startswith("async+memory://"):
        return SweptMemoryStorage(uri)
    options = {"key_prefix": key_prefix}
    try:
        storage = storage_from_string(uri, **options)
    except ConfigurationError as exc:
        hint = (
            " (the Redis driver comes with the service: reinstall it, or pip install "
            "'limits[async-redis]')"
            if "redis" in uri and "could not be found" in str(exc)
            else ""
        )
        raise RateLimitStorageError(
            f"PAYMENTS_RATE_LIMIT_STORAGE_URI={storage_uri!r} cannot be used: {exc}{hint}"
        ) from exc
    if not isinstance(storage, Storage):
        raise RateLimitStorageError(
            f"PAYMENTS_RATE_LIMIT_STORAGE_URI={storage_uri!r} is not an asyncio storage"
        )
    return storage


async def check_storage(storage: Storage, storage_uri: str) -> None:
    """Refuse to start when the shared store does not answer (checked once at start)."""
    try:
        reachable = await storage.check()
    except Exception as exc:
        raise RateLimitStorageError(
            f"rate-limit store {storage_uri!r} is unreachable: {type(exc).__name__}"
        ) from exc
    if not reachable:
        raise RateLimitStorageError(f"rate-limit store {storage_uri!r} is unreachable")


def close_storage(storage: Storage) -> None:
    """Close a shared store's connections (at shutdown). ``limits`` has no close of its
    own; its Redis storage keeps a coredis client with a connection pool on its bridge."""
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_user: str,
        per_ip: str,
        storage: Storage,
        problem_base_url: str,
        identify_caller: Callable[[Scope], str | None],
    ) -> None:
        """``identify_caller`` names the authenticated caller of a request (None when
        there is none): kit knows no authentication scheme, ``main`` wires
        ``auth.caller_id``."""
        self.app = app
        self.identify_caller = identify_caller
        self.per_user: RateLimitItem = parse(per_user)
        self.per_ip: RateLimitItem = parse(per_ip)
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.problem_base_url = problem_base_url.rstrip("/")

    @staticmethod
    def applies(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return (
            scope["type"] == "http"
            and scope["method"] in WRITE_METHODS
            and path.startswith("/api/v1/")
            and not path.startswith("/api/v1/webhooks/")  # Stripe's retries are not abuse
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.applies(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        checks: list[tuple[RateLimitItem, str, str]] = [
            (self.per_ip, "ip", client[0] if client else "unknown")
        ]
        user = self.identify_caller(scope)
        if user is not None:
            checks.append((self.per_user, "user", user))
        for item, kind, identity in checks:
            if not await self.limiter.hit(item, kind, identity):
                reset, _remaining = await self.limiter.get_window_stats(item, kind, identity)
                await self._reject(scope, send, kind, max(1, math.ceil(reset - time.time())))
                return
        await self.app(scope, receive, send)

    async def _reject(self, scope: Scope, send: Send, kind: str, retry_after: int) -> None:
        request_id = scope.get("state", {}).get("request_id")
        detail = f"Too many write requests from this {'user' if kind == 'user' else 'address'}."
        body: dict[str, Any] = {
            "type": f"{self.problem_base_url}/{RateLimited.code}",
            "title": RateLimited.title,
            "status": 429,
            "detail": detail,
            "instance": scope.get("path"),
            "code": RateLimited.code,
            "message": detail,
            "request_id": request_id,
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(payload)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
