"""Record the SQL of every benchmarked request kind by running it once, in-process,
through the real application on the benchmark database (see bench/replay.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench import workload as w
from bench.replay import Recorder, Recording
from bench.seed import order_id
from payments_api.main import build_state, create_app, dispose_state
from payments_api.settings import Settings


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


class Session:
    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens
        self.events = w.EventTemplate()

    def headers(self, user: str, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        if key is not None:
            headers["Idempotency-Key"] = key
            headers["Content-Type"] = "application/json"
        return headers

    async def call(
        self, method: str, path: str, user: str | None, *, key: str | None = None, body: bytes = b""
    ) -> httpx.Response:
        headers = self.headers(user, key) if user else {}
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        response = await self.client.request(method, path, headers=headers, content=body)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response


async def record_all(
    settings: Settings, sizes: w.Sizes, *, order_base: int, deep_cursor: int
) -> list[Recording]:
    """Every request kind twice (a warm-up, then the recorded one)."""
    users = [w.balance_user(1), w.balance_user(2), w.EARNINGS_PAYEE]
    users += [w.customer(0), w.replay_user(0)]
    tokens = w.mint_tokens(users, ["customer"])
    tokens.update(w.mint_tokens([w.payee(0), w.EARNINGS_PAYEE], ["payee"]))
    app = create_app(settings)
    state = await build_state(settings)
    app.state.resources = state
    recordings: list[Recording] = []
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            session = Session(client, tokens)

            async def twice(
                name: str,
                run: Callable[[bool], Awaitable[tuple[dict[str, Any], dict[str, Any]]]],
            ) -> None:
                await run(False)
                with Recorder.recording() as calls:
                    inputs, outputs = await run(True)
                recordings.append(Recording(name, list(calls), inputs, outputs))

            async def balance(recorded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
                user = w.balance_user(2 if recorded else 1)
                await session.call("GET", "/api/v1/me/balance", user)
                return {"user": user}, {}

            async def earnings_first(recorded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
                await session.call("GET", "/api/v1/me/earnings", w.EARNINGS_PAYEE)
                return {"user": w.EARNINGS_PAYEE}, {}

            async def earnings_deep(recorded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
                path = f"/api/v1/me/earnings?starting_after=ern_{deep_cursor}"
                await session.call("GET", path, w.EARNINGS_PAYEE)
                return {"user": w.EARNINGS_PAYEE, "cursor": deep_cursor}, {}

            await twice("balance", balance)
            await twice("earnings_first", earnings_first)
            await twice("earnings_deep", earnings_deep)

            # One settlement: create, accept, complete (a warm-up flow, then recorded).
            for recorded in (False, True):
                customer, payee = w.customer(0), w.payee(0)
                keys = [new_key() for _ in range(3)]
                with Recorder.recording() as create_calls:
                    created = await session.call(
                        "POST",
                        "/api/v1/escrows",
                        customer,
                        key=keys[0],
                        body=w.escrow_body(payee),
                    )
                escrow = int(created.json()["id"].removeprefix("esc_"))
                path = f"/api/v1/escrows/esc_{escrow}"
                with Recorder.recording() as accept_calls:
                    await session.call("POST", f"{path}/accept", payee, key=keys[1])
                with Recorder.recording() as complete_calls:
                    completed = await session.call(
                        "POST", f"{path}/complete", customer, key=keys[2]
                    )
                if completed.json()["status"] != "completed":
                    raise RuntimeError(f"recorded settlement ended {completed.json()['status']}")
                if recorded:
                    recordings += [
                        Recording(
                            "escrow_create",
                            list(create_calls),
                            {"customer": customer, "payee": payee, "key": keys[0]},
                            {"escrow": escrow},
                        ),
                        Recording(
                            "escrow_accept",
                            list(accept_calls),
                            {"payee": payee, "key": keys[1], "escrow": escrow},
                            {},
                        ),
                        Recording(
                            "escrow_complete",
                            list(complete_calls),
                            {"customer": customer, "key": keys[2], "escrow": escrow},
                            {},
                        ),
                    ]

            async def webhook(recorded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
                g = 2 if recorded else 1
                order = order_id(order_base, g)
                body = session.events.body(g, order)
                response = await client.post(
                    "/api/v1/webhooks/stripe",
                    content=body,
                    headers={
                        "Stripe-Signature": w.stripe_signature(body),
                        "Content-Type": "application/json",
                    },
                )
                if response.status_code != 200 or response.json()["status"] != "processed":
                    raise RuntimeError(f"webhook: {response.status_code} {response.text[:300]}")
                # The credited user is learned from the order row, as the handler does.
                inputs = {"event": w.order_event(g), "pi": w.order_pi(g), "order": order}
                return inputs, {}

            await twice("webhook", webhook)

            # A completed create, then its replays.
            replay_key = new_key()
            replayer = w.replay_user(0)
            body = w.escrow_body(w.payee(0))
            await session.call("POST", "/api/v1/escrows", replayer, key=replay_key, body=body)

            async def replay(recorded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
                response = await session.call(
                    "POST", "/api/v1/escrows", replayer, key=replay_key, body=body
                )
                if response.headers.get("idempotent-replayed") != "true":
                    raise RuntimeError("the replay was executed again")
                return {"user": replayer, "key": replay_key}, {}

            await twice("replay", replay)
    finally:
        await dispose_state(state)
    for recording in recordings:
        recording.compile()  # fails here, not in the load process, if it cannot replay
    return recordings


def describe(recordings: list[Recording]) -> dict[str, Any]:
    """Round trips per request kind, for the report."""
    out: dict[str, Any] = {}
    for recording in recordings:
        program = recording.compile()
        out[recording.name] = {
            "round_trips": program.statements,
            "pings": program.pings,
            "replayed": len(program.steps),
        }
    return out
