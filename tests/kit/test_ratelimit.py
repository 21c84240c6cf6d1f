"""Write requests are limited per user and per client IP, with 429 problems."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import limits.aio.storage.memory
import limits.aio.strategies
import pytest

from payments_api.kit.ratelimit import (
    RateLimitStorageError,
    SweptMemoryStorage,
    build_storage,
    close_storage,
)
from payments_api.main import create_app
from payments_api.settings import Settings
from tests.helpers import auth

ADJUST = "/api/v1/admin/adjustments"


async def _post(client: httpx.AsyncClient, user: str, key: str) -> httpx.Response:
    # An admin write with a body that fails validation: it reaches the limiter like any
    # write, and writes nothing.
    return await client.post(
        ADJUST, json={}, headers={**auth(user, ["admin"]), "Idempotency-Key": key}
    )


@pytest.fixture
def limiter_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory limiter's clock, stopped in the middle of a minute: a sliding window
    counter lets a request through when its window rolls over between two requests (the
    previous window's hits then weigh a little less than their number), so a test that
    happened to straddle a minute boundary would see a limit not yet reached."""
    minute = time.time() // 60 * 60
    stopped = SimpleNamespace(time=lambda: minute + 30)
    monkeypatch.setattr(limits.aio.storage.memory, "time", stopped)
    monkeypatch.setattr(limits.aio.strategies, "time", stopped)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.usefixtures("limiter_clock")
class TestRateLimit:
    async def test_per_user_limit_with_retry_after(self, app_factory: Any) -> None:
        app = app_factory(rate_limit_enabled=True, rate_limit_per_user="3/minute")
        async with _client(app) as client:
            statuses = [(await _post(client, "busy", f"k{i}")).status_code for i in range(3)]
            assert statuses == [422, 422, 422]
            limited = await _post(client, "busy", "k4")
            assert limited.status_code == 429
            assert limited.headers["content-type"] == "application/problem+json"
            assert limited.json()["code"] == "rate_limited"
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert limited.headers["x-request-id"] == limited.json()["request_id"]
            # another user is not affected, and reads are never limited
            assert (await _post(client, "calm", "k1")).status_code == 422
            me = await client.get("/api/v1/me", headers=auth("busy"))
            assert me.status_code == 200

    async def test_per_ip_limit_covers_anonymous_and_all_users(self, app_factory: Any) -> None:
        app = app_factory(rate_limit_enabled=True, rate_limit_per_ip="2/minute")
        async with _client(app) as client:
            first = await client.post(ADJUST, json={})
            assert first.status_code == 401
            assert (await _post(client, "u1", "a")).status_code == 422
            limited = await _post(client, "u2", "b")
            assert limited.status_code == 429
            assert limited.json()["detail"].endswith("address.")

    async def test_webhooks_are_not_limited(self, app_factory: Any) -> None:
        app = app_factory(rate_limit_enabled=True, rate_limit_per_ip="1/minute")
        async with _client(app) as client:
            for _ in range(3):
                response = await client.post(
                    "/api/v1/webhooks/stripe",
                    content=b"{}",
                    headers={"Content-Type": "application/json"},
                )
                assert response.status_code == 400  # refused for its signature, not rate

    def test_declared_in_openapi(self, app_factory: Any) -> None:
        spec = app_factory().openapi()
        assert "429" in spec["paths"]["/api/v1/topups"]["post"]["responses"]
        assert "429" not in spec["paths"]["/api/v1/webhooks/stripe"]["post"]["responses"]
        assert "429" not in spec["paths"]["/api/v1/me/balance"]["get"]["responses"]


REDIS = "async+redis://127.0.0.1:6379"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _redis_app(app_factory: Any, prefix: str, per_user: str) -> Any:
    return app_factory(
        rate_limit_enabled=True,
        rate_limit_per_user=per_user,
        rate_limit_storage_uri=REDIS,
        rate_limit_key_prefix=prefix,
    )


class TestSharedRedisStore:
    async def test_two_replicas_share_the_counters_in_redis(self, app_factory: Any) -> None:
        # Keys of its own per run (prefix and user): the real Redis is shared with other
        # runs and checkouts.
        prefix = f"test-{uuid.uuid4().hex}"
        user = f"redis-{uuid.uuid4().hex}"
        first, second = (_redis_app(app_factory, prefix, "3/minute") for _ in range(2))
        try:
            async with _client(first) as a, _client(second) as b:
                statuses = [
                    (await _post(a, user, "k1")).status_code,
                    (await _post(b, user, "k2")).status_code,
                    (await _post(a, user, "k3")).status_code,
                    (await _post(b, user, "k4")).status_code,
                ]
        finally:
            for app in (first, second):
                close_storage(app.state.rate_limit_storage)
        # Counted together: the fourth request is over the limit on the other replica.
        assert statuses == [422, 422, 422, 429]

    async def test_installations_with_their_own_prefixes_count_apart(
        self, app_factory: Any
    ) -> None:
        # Staging and production on one Redis, the same user id in both.
        user = f"redis-{uuid.uuid4().hex}"
        staging, production = (
            _redis_app(app_factory, f"test-{uuid.uuid4().hex}", "2/minute") for _ in range(2)
        )
        try:
            async with _client(staging) as a, _client(production) as b:
                statuses = [
                    (await _post(a, user, "k1")).status_code,
                    (await _post(a, user, "k2")).status_code,
                    (await _post(b, user, "k3")).status_code,
                    (await _post(b, user, "k4")).status_code,
                    (await _post(a, user, "k5")).status_code,
                ]
        finally:
            for app in (staging, production):
                close_storage(app.state.rate_limit_storage)
        # Each allows its own two; only the third in the same installation is refused.
        assert statuses == [422, 422, 422, 422, 429]

    def test_a_missing_redis_driver_stops_the_start_and_says_what_to_install(self) -> None:
        # In a process of its own: this one has the driver loaded already.
        code = (
            "import sys; sys.modules['coredis'] = None\n"
            "from payments_api.kit.ratelimit import RateLimitStorageError, build_storage\n"
            "try:\n"
            "    build_storage('async+redis://127.0.0.1:6379')\n"
            "except RateLimitStorageError as exc:\n"
            "    print(exc)\n"
        )
        result = subprocess.run(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "PAYMENTS_RATE_LIMIT_STORAGE_URI='async+redis://127.0.0.1:6379'" in result.stdout
        assert "pip install 'limits[async-redis]'" in result.stdout

    def test_an_unknown_store_stops_the_app_from_being_built(self, settings: Settings) -> None:
        bad = settings.model_copy(
            update={"rate_limit_enabled": True, "rate_limit_storage_uri": "nosuch://x"}
        )
        with pytest.raises(RateLimitStorageError, match="nosuch://x"):
            create_app(bad)

    async def test_an_unreachable_store_stops_the_start(self, settings: Settings) -> None:
        uri = f"async+redis://127.0.0.1:{_closed_port()}"
        app = create_app(
            settings.model_copy(update={"rate_limit_enabled": True, "rate_limit_storage_uri": uri})
        )
        with pytest.raises(RateLimitStorageError, match="unreachable"):
            async with app.router.lifespan_context(app):
                pass


class TestSweptMemoryStorage:
    """The memory store sweeps out expired counters once per sweep interval at most;
    counting does not wait for a sweep."""

    async def test_hits_within_a_sweep_interval_start_no_other_sweep(self) -> None:
        now = [100.0]
        storage = SweptMemoryStorage("async+memory://", clock=lambda: now[0])
        await storage.incr("a", 60)
        first = storage.timer
        assert first is not None
        await first  # the first hit's sweep has run
        for key in ("b", "c", "a"):
            await storage.incr(key, 60)
        # The library's storage would have started a sweep for each of these hits.
        assert storage.timer is first
        now[0] += SweptMemoryStorage.SWEEP_INTERVAL
        await storage.incr("d", 60)
        assert storage.timer is not first

    async def test_an_expired_counter_counts_nothing_before_any_sweep(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        wall = [1_000.0]
        monkeypatch.setattr(
            limits.aio.storage.memory, "time", SimpleNamespace(time=lambda: wall[0])
        )
        storage = SweptMemoryStorage("async+memory://", clock=lambda: 0.0)
        assert await storage.incr("k", 10) == 1
        assert storage.timer is not None
        await storage.timer  # the one sweep: nothing had expired
        assert await storage.incr("k", 10) == 2
        wall[0] += 10
        assert await storage.get("k") == 0
        assert await storage.incr("k", 10) == 1

    def test_the_service_counts_in_memory_with_it(self) -> None:
        assert isinstance(build_storage("memory://"), SweptMemoryStorage)
