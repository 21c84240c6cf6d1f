"""Baselines B and C: ``uvicorn --factory bench.baseline_app:create``, started by
``bench/http.py`` with the same uvicorn settings (workers, loop, HTTP parser) as the
service.

- ``GET /b/constant`` (baseline B) returns a constant: the HTTP stack's own ceiling.
- ``/c/...`` (baseline C): what each benchmarked request costs with no framework of ours
  around it. Each route does what the request needs and nothing else: it checks the
  bearer token with the same JWT library (or the Stripe signature with HMAC), then sends
  the request's recorded SQL (``bench/replay.py``) on a connection from a plain asyncpg
  pool and returns the rows as JSON. No SQLAlchemy, no pydantic models, no middleware.
  The pool skips asyncpg's reset query on release: every program ends its transactions,
  and the lean reference is the point.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Header, HTTPException, Request, Response
from jose import jwt

from bench import workload as w
from bench.replay import Program, load_programs


async def _no_reset(connection: Any) -> None:
    return None


def _sub(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(401)
    try:
        claims = jwt.decode(token, w.JWT_SECRET, algorithms=["HS256"])
    except Exception as exc:
        raise HTTPException(401) from exc
    return str(claims["sub"])


def _rows(results: list[Any]) -> bytes:
    rows = [dict(row) for result in results if result for row in result]
    return json.dumps(rows, default=str).encode()


def create() -> FastAPI:
    pool: asyncpg.Pool | None = None
    programs: dict[str, Program] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(
            os.environ["BENCH_DSN"],
            min_size=1,
            max_size=int(os.environ.get("BENCH_POOL_MAX", "20")),
            # Idle connections close soon after C's measurement, so they do not count
            # against max_connections while the service and A run.
            max_inactive_connection_lifetime=2.0,
            reset=_no_reset,
            server_settings={"application_name": "payments-bench-c", "statement_timeout": "15000"},
        )
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    async def run(name: str, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        if not programs:  # recorded after the server started: loaded on first use
            programs.update(load_programs(Path(os.environ["BENCH_TRACES"])))
        assert pool is not None  # noqa: S101
        async with pool.acquire() as connection:
            return await programs[name].run(connection, inputs)

    def json_response(body: bytes, status: int = 200) -> Response:
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/b/constant")
    async def constant() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/c/balance")
    async def balance(authorization: Annotated[str, Header()]) -> Response:
        _, results = await run("balance", {"user": _sub(authorization)})
        return json_response(_rows(results))

    @app.get("/c/earnings")
    async def earnings(
        authorization: Annotated[str, Header()], starting_after: str | None = None
    ) -> Response:
        user = _sub(authorization)
        if starting_after is None:
            _, results = await run("earnings_first", {"user": user})
        else:
            cursor = int(starting_after.removeprefix("ern_"))
            _, results = await run("earnings_deep", {"user": user, "cursor": cursor})
        return json_response(_rows(results))

    @app.post("/c/escrows", status_code=201)
    async def create_escrow(
        request: Request,
        authorization: Annotated[str, Header()],
        idempotency_key: Annotated[str, Header()],
    ) -> Response:
        body = json.loads(await request.body())
        inputs = {
            "customer": _sub(authorization),
            "payee": body["payee_id"],
            "key": idempotency_key,
        }
        out, _ = await run("escrow_create", inputs)
        return json_response(json.dumps({"id": f"esc_{out['escrow']}"}).encode(), 201)

    @app.post("/c/escrows/{escrow_id}/{action}")
    async def transition(
        escrow_id: str,
        action: str,
        authorization: Annotated[str, Header()],
        idempotency_key: Annotated[str, Header()],
    ) -> Response:
        user = _sub(authorization)
        escrow = int(escrow_id.removeprefix("esc_"))
        if action == "accept":
            inputs = {"payee": user, "key": idempotency_key, "escrow": escrow}
        elif action == "complete":
            inputs = {"customer": user, "key": idempotency_key, "escrow": escrow}
        else:
            raise HTTPException(404)
        _, results = await run(f"escrow_{action}", inputs)
        return json_response(_rows(results))

    @app.post("/c/webhooks/stripe")
    async def webhook(request: Request, stripe_signature: Annotated[str, Header()]) -> Response:
        payload = await request.body()
        if not w.verify_signature(payload, stripe_signature):
            raise HTTPException(400)
        event = json.loads(payload)
        intent = event["data"]["object"]
        inputs = {
            "event": event["id"],
            "pi": intent["id"],
            "order": int(intent["metadata"]["order_id"]),
        }
        await run("webhook", inputs)
        return json_response(b'{"received":true,"status":"processed"}')

    @app.post("/c/replay")
    async def replay(
        authorization: Annotated[str, Header()], idempotency_key: Annotated[str, Header()]
    ) -> Response:
        _, results = await run("replay", {"user": _sub(authorization), "key": idempotency_key})
        # The statement that read the stored response (wherever the service's claim puts
        # it): the first one whose rows carry it.
        stored = next(rows[0] for rows in results if rows and "response_body" in rows[0])
        return json_response(bytes(stored["response_body"]), int(stored["response_status"]))

    return app
