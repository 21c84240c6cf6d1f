"""The load process: ``python -m bench.load CONFIG_JSON``, started by ``bench/http.py``.

It runs in its own process, so the load it generates never shares a Python thread
(or the GIL) with the server it measures. It reads one job per line on stdin (a JSON
object: scenario, target, clients, warm-up and timed seconds), prints
``{"event": "window", ...}`` when the timed window is fixed and then the result line,
and repeats until stdin closes.

HTTP/1.1 is spoken by a small asyncio client on ``httptools`` (the parser uvicorn uses):
one keep-alive connection per client, one request in flight on it, a few microseconds
of client CPU per request, so the load process is not what limits the figures (its CPU
is measured and reported). Baseline A runs here too: the recorded SQL of the request
(``bench/replay.py``) on one asyncpg connection per client.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httptools

from bench import a0
from bench import workload as w
from bench.replay import Program, load_programs

REQUEST_TIMEOUT = 30.0
ACKS = (b'"processed"', b'"duplicate"', b'"in_progress"')


# --- a minimal HTTP/1.1 client ----------------------------------------------------------------
@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.headers = {}
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(
                Response(self.parser.get_status_code(), self.headers, b"".join(self.body))
            )

    async def request(self, raw: bytes) -> Response:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await asyncio.wait_for(self.waiter, REQUEST_TIMEOUT)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def http_request(
    method: str, path: str, host: str, headers: list[tuple[str, str]], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Failed(Exception):
    """A response that is not what the scenario expects."""


def expect(response: Response, status: int, *, replayed: bool | None = None) -> Response:
    if response.status != status:
        raise Failed(f"HTTP {response.status}: {response.body[:160]!r}")
    if (
        replayed is not None
        and (response.headers.get(b"idempotent-replayed") == b"true") != replayed
    ):
        raise Failed(f"Idempotent-Replayed should be {replayed}")
    return response


# --- the load process -------------------------------------------------------------------------
@dataclass
class Config:
    host: str
    service_port: int
    baseline_port: int
    dsn: str
    traces: str
    balance_users: int
    escrow_clients: int
    replay_keys: int
    order_base: int
    deep_cursor: int


@dataclass
class Tally:
    """What one job did."""

    latencies: list[float] = field(default_factory=list)
    request_latencies: list[tuple[float, float]] = field(default_factory=list)
    """(finished at, seconds) of every HTTP request (or replayed request) of the job."""
    new_events: list[float] = field(default_factory=list)
    """When each first delivery of an event was acknowledged."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    units: int = 0
    """Operations completed in the whole job (warm-up included)."""
    requests: int = 0
    acked: list[int] = field(default_factory=list)
    """Orders whose event a delivery acknowledged (webhook scenarios)."""
    completed_flows: int = 0
    replays: int = 0
    finished_in_window: int = 0
    """Open loop: operations that finished inside the timed window."""

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])


Op = Callable[[Tally], Awaitable[None]]


class Load:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.events = w.EventTemplate()
        self.programs: dict[str, Program] = {}
        customers = [w.customer(i) for i in range(config.escrow_clients + 1)]
        customers += [w.replay_user(i) for i in range(config.escrow_clients + 1)]
        customers += [w.balance_user(i) for i in range(1, config.balance_users + 1)]
        self.tokens = w.mint_tokens(customers, ["customer"])
        payees = [w.payee(i) for i in range(config.escrow_clients + 1)] + [w.EARNINGS_PAYEE]
        self.tokens.update(w.mint_tokens(payees, ["payee"]))
        self.replay_set: list[tuple[str, str, str]] = []
        """(user, key, payee) of completed create requests, replayed by scenario 6."""
        self.next_order = 0
        self.prebuilt: dict[str, list[bytes]] = {}

    def program(self, name: str) -> Program:
        if not self.programs:
            self.programs = load_programs(Path(self.config.traces))
        return self.programs[name]

    # --- request building
    def host(self, target: str) -> tuple[int, str]:
        port = self.config.baseline_port if target in ("b", "c") else self.config.service_port
        return port, f"{self.config.host}:{port}"

    def auth(self, user: str) -> tuple[str, str]:
        return ("Authorization", f"Bearer {self.tokens[user]}")

    async def connect(self, target: str) -> Connection:
        port, _ = self.host(target)
        return await Connection.open(self.config.host, port)

    # --- jobs
    async def run(self, job: dict[str, Any], out: Callable[[dict[str, Any]], None]) -> None:
        if job["scenario"] == "setup":
            out(await self.setup())
            return
        clients = int(job["clients"])
        target = job["target"]
        scenario = job["scenario"]
        tally = Tally()
        if scenario in ("webhook", "webhook-dup"):
            self.next_order = int(job["orders_from"])
        first_order = self.next_order
        resources: list[Any] = []
        ops: list[Op] = []
        spare: list[Connection] = []
        if target not in ("a", "a0"):
            per_client = 2 if scenario.startswith("webhook") else 1
            spare = await self.open_balanced(target, clients * per_client, job.get("workers", []))
            # Client k takes connections k, k + clients, ...: both of a client's
            # connections never sit on the same worker when there are two workers.
            spare = [spare[k + j * clients] for k in range(clients) for j in range(per_client)]
        for k in range(clients):
            op, owned = await self.make_op(scenario, target, k, clients, spare)
            ops.append(op)
            resources += owned
        start = time.monotonic() + 0.05
        window = (
            start + float(job["warmup"]),
            start + float(job["warmup"]) + float(job["seconds"]),
        )
        out({"event": "window", "start": window[0], "end": window[1]})
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        rate = float(job.get("rate") or 0)
        backlog = 0
        try:
            if rate > 0:
                backlog = await self.open_loop(ops, tally, window, rate)
            else:
                await asyncio.gather(*(self.client(op, tally, window) for op in ops))
        finally:
            for resource in resources:
                if isinstance(resource, Connection):
                    resource.close()
                else:
                    await resource.close()
        seconds = float(job["seconds"])
        tally.latencies.sort()
        requests = sorted(
            latency for end, latency in tally.request_latencies if window[0] <= end <= window[1]
        )
        applied = sum(1 for end in tally.new_events if window[0] <= end <= window[1])
        ops_done = len(tally.latencies) if rate <= 0 else tally.finished_in_window
        out(
            {
                "event": "result",
                "ops": ops_done / seconds,
                "offered_ops": rate,
                "backlog": backlog,
                "p50_ms": percentile(tally.latencies, 0.5) * 1000,
                "p99_ms": percentile(tally.latencies, 0.99) * 1000,
                "p999_ms": percentile(tally.latencies, 0.999) * 1000,
                "request_ops": len(requests) / seconds,
                "request_p50_ms": percentile(requests, 0.5) * 1000,
                "request_p99_ms": percentile(requests, 0.99) * 1000,
                "applied_ops": applied / seconds,
                "errors": tally.errors,
                "error_samples": tally.error_samples,
                "units": tally.units,
                "requests": tally.requests,
                "acked": tally.acked,
                "orders": [first_order, self.next_order],
                "completed_flows": tally.completed_flows,
                "replays": tally.replays,
            }
        )

    @staticmethod
    async def client(op: Op, tally: Tally, window: tuple[float, float]) -> None:
        start, end = window
        while (began := time.monotonic()) < end:
            try:
                await op(tally)
            except Exception as exc:
                tally.error(exc)
                continue
            finished = time.monotonic()
            tally.units += 1
            # Throughput counts what completes inside the window (an operation may start
            # in the warm-up): with slow operations a short window still sees them.
            if start <= finished <= end:
                tally.latencies.append(finished - began)

    @staticmethod
    async def open_loop(
        ops: list[Op], tally: Tally, window: tuple[float, float], rate: float
    ) -> int:
        """Open loop: operations arrive at a fixed rate (one every 1/rate s, from the
        start of the warm-up to the end of the window) whether or not earlier ones have
        finished; each is served by the first free client (connection). Its latency runs
        from its scheduled arrival, so time spent queued for a free client counts (no
        coordinated omission). Latencies are those of arrivals scheduled inside the
        window, however late they finish. Returns how many earlier arrivals were still
        waiting for a client when the last one was due (0 when the service kept up)."""
        start, end = window
        begin = time.monotonic()
        interval = 1.0 / rate
        queue: asyncio.Queue[float | None] = asyncio.Queue()
        backlog = 0

        async def arrivals() -> None:
            nonlocal backlog
            i = 0
            while (due := begin + i * interval) < end:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                backlog = queue.qsize()  # arrivals due before this one, not yet started
                queue.put_nowait(due)
                i += 1
            for _ in ops:
                queue.put_nowait(None)

        async def serve(op: Op) -> None:
            while (due := await queue.get()) is not None:
                try:
                    await op(tally)
                except Exception as exc:
                    tally.error(exc)
                    continue
                finished = time.monotonic()
                tally.units += 1
                if start <= finished <= end:
                    tally.finished_in_window += 1
                if start <= due < end:
                    tally.latencies.append(finished - due)

        await asyncio.gather(arrivals(), *(serve(op) for op in ops))
        return backlog

    async def timed(self, tally: Tally, request: Awaitable[Response]) -> Response:
        began = time.monotonic()
        response = await request
        finished = time.monotonic()
        tally.requests += 1
        tally.request_latencies.append((finished, finished - began))
        return response

    async def open_balanced(self, target: str, count: int, workers: list[int]) -> list[Connection]:
        """``count`` connections spread evenly over the server's worker processes, as a
        load balancer would spread them: the kernel hands a new connection to whichever
        worker accepts first, often several to one worker, which then saturates while
        the other idles. Which worker holds which connection is read from /proc."""
        port, _ = self.host(target)
        if len(workers) < 2:
            return [await self.connect(target) for _ in range(count)]
        want = {
            pid: count // len(workers) + (k < count % len(workers)) for k, pid in enumerate(workers)
        }
        kept: dict[int, list[Connection]] = {pid: [] for pid in workers}
        for _ in range(count * 20):
            if not any(want.values()):
                break
            conn = await self.connect(target)
            owner = await accepted_by(conn, port, workers)
            if owner is not None and want.get(owner, 0) > 0:
                want[owner] -= 1
                kept[owner].append(conn)
            else:
                conn.close()
        else:
            raise RuntimeError(f"could not spread {count} connections over workers {workers}")
        # Interleaved: consecutive connections sit on different workers.
        out: list[Connection] = []
        while any(kept.values()):
            for pid in workers:
                if kept[pid]:
                    out.append(kept[pid].pop())
        return out

    async def make_op(
        self, scenario: str, target: str, k: int, clients: int, spare: list[Connection]
    ) -> tuple[Op, list[Any]]:
        """The operation client ``k`` repeats, and what it holds (closed after the job)."""
        if target in ("a", "a0"):
            connection = await asyncpg.connect(self.config.dsn)
            if target == "a0":
                return self.a0_op(scenario, connection, k), [connection]
            return self.sql_op(scenario, connection, k), [connection]
        conn = spare.pop(0)
        _, host = self.host(target)
        held: list[Any] = [conn]
        prefix = "/c" if target == "c" else "/api/v1"
        rng = random.Random(k)

        if scenario == "constant":
            raw = http_request("GET", "/b/constant", host, [])

            async def constant(tally: Tally) -> None:
                expect(await conn.request(raw), 200)

            return constant, held

        if scenario == "balance":
            path = "/c/balance" if target == "c" else "/api/v1/me/balance"
            if path not in self.prebuilt:
                self.prebuilt[path] = [
                    http_request("GET", path, host, [self.auth(w.balance_user(i + 1))])
                    for i in range(self.config.balance_users)
                ]
            requests = self.prebuilt[path]

            async def balance(tally: Tally) -> None:
                expect(await conn.request(requests[rng.randrange(len(requests))]), 200)

            return balance, held

        if scenario in ("earnings-first", "earnings-deep"):
            path = "/c/earnings" if target == "c" else "/api/v1/me/earnings"
            if scenario == "earnings-deep":
                path += f"?starting_after=ern_{self.config.deep_cursor}"
            raw = http_request("GET", path, host, [self.auth(w.EARNINGS_PAYEE)])

            async def earnings(tally: Tally) -> None:
                expect(await conn.request(raw), 200)

            return earnings, held

        if scenario == "settlement":
            customer, payee = w.customer(k + 1), w.payee(k + 1)
            create_body = w.escrow_body(payee)

            def post(path: str, user: str, body: bytes = b"") -> bytes:
                headers = [self.auth(user), ("Idempotency-Key", f"key-{uuid.uuid4().hex}")]
                if body:
                    headers.append(("Content-Type", "application/json"))
                return http_request("POST", path, host, headers, body)

            async def settle(tally: Tally) -> None:
                created = expect(
                    await self.timed(
                        tally, conn.request(post(f"{prefix}/escrows", customer, create_body))
                    ),
                    201,
                )
                escrow = created.json()["id"]
                expect(
                    await self.timed(
                        tally, conn.request(post(f"{prefix}/escrows/{escrow}/accept", payee))
                    ),
                    200,
                )
                expect(
                    await self.timed(
                        tally, conn.request(post(f"{prefix}/escrows/{escrow}/complete", customer))
                    ),
                    200,
                )
                tally.completed_flows += 1

            return settle, held

        if scenario in ("webhook", "webhook-dup"):
            path = "/c/webhooks/stripe" if target == "c" else "/api/v1/webhooks/stripe"
            twin = spare.pop(0)
            held.append(twin)
            later: list[tuple[int, bytes]] = []

            def delivery(g: int, body: bytes) -> bytes:
                headers = [
                    ("Stripe-Signature", w.stripe_signature(body)),
                    ("Content-Type", "application/json"),
                ]
                return http_request("POST", path, host, headers, body)

            async def send(
                tally: Tally, connection: Connection, g: int, body: bytes, *, first: bool
            ) -> None:
                response = expect(
                    await self.timed(tally, connection.request(delivery(g, body))), 200
                )
                if not any(ack in response.body for ack in ACKS):
                    raise Failed(f"not acknowledged: {response.body[:160]!r}")
                tally.acked.append(g)
                if first:
                    tally.new_events.append(time.monotonic())

            async def webhook(tally: Tally) -> None:
                if scenario == "webhook-dup" and later and rng.random() < 0.3:
                    # A redelivery of an event this client sent earlier (same id and
                    # body, fresh signature), as Stripe retries.
                    g, body = later.pop(0)
                    await send(tally, conn, g, body, first=False)
                    return
                self.next_order += 1
                g = self.next_order
                body = self.events.body(g, self.config.order_base + g - 1)
                roll = rng.random()
                if scenario == "webhook-dup" and roll < 0.1:
                    # Two deliveries of one event at the same time, on two connections.
                    await asyncio.gather(
                        send(tally, conn, g, body, first=True),
                        send(tally, twin, g, body, first=False),
                    )
                else:
                    await send(tally, conn, g, body, first=True)
                    if scenario == "webhook-dup" and roll < 0.4:
                        later.append((g, body))

            return webhook, held

        if scenario == "replay":
            path = "/c/replay" if target == "c" else "/api/v1/escrows"
            requests = [
                http_request(
                    "POST",
                    path,
                    host,
                    [
                        self.auth(user),
                        ("Idempotency-Key", key),
                        ("Content-Type", "application/json"),
                    ],
                    w.escrow_body(payee),
                )
                for user, key, payee in self.replay_set
            ]

            async def replay(tally: Tally) -> None:
                response = await conn.request(requests[rng.randrange(len(requests))])
                expect(response, 201, replayed=target == "service")
                tally.replays += 1

            return replay, held
        raise ValueError(f"unknown scenario {scenario!r} for target {target!r}")

    @staticmethod
    def a0_op(scenario: str, connection: Any, k: int) -> Op:
        """Baseline A0: a settlement's business effect in minimal hand-written SQL, one
        statement per request (``bench/a0.py``)."""
        if scenario != "settlement":
            raise ValueError(f"baseline A0 has no {scenario!r} scenario")
        customer, payee = w.customer(k + 1), w.payee(k + 1)

        async def settle(tally: Tally) -> None:
            began = time.monotonic()
            escrow = await a0.create(connection, customer, payee, f"key-{uuid.uuid4().hex}")
            middle = time.monotonic()
            await a0.accept(connection, escrow, payee)
            third = time.monotonic()
            await a0.complete(connection, escrow, customer)
            end = time.monotonic()
            tally.request_latencies += [
                (middle, middle - began),
                (third, third - middle),
                (end, end - third),
            ]
            tally.requests += 3
            tally.completed_flows += 1

        return settle

    def sql_op(self, scenario: str, connection: Any, k: int) -> Op:
        """Baseline A: the request's recorded SQL, replayed on one asyncpg connection."""
        rng = random.Random(k)
        if scenario == "balance":
            program = self.program("balance")
            users = self.config.balance_users

            async def balance(tally: Tally) -> None:
                await program.run(connection, {"user": w.balance_user(rng.randrange(users) + 1)})

            return balance
        if scenario in ("earnings-first", "earnings-deep"):
            program = self.program(scenario.replace("-", "_"))
            inputs = {"user": w.EARNINGS_PAYEE, "cursor": self.config.deep_cursor}

            async def earnings(tally: Tally) -> None:
                await program.run(connection, inputs)

            return earnings
        if scenario == "settlement":
            create, accept, complete = (
                self.program(f"escrow_{step}") for step in ("create", "accept", "complete")
            )
            customer, payee = w.customer(k + 1), w.payee(k + 1)

            async def settle(tally: Tally) -> None:
                began = time.monotonic()
                out, _ = await create.run(
                    connection,
                    {"customer": customer, "payee": payee, "key": f"key-{uuid.uuid4().hex}"},
                )
                middle = time.monotonic()
                escrow = out["escrow"]
                await accept.run(
                    connection, {"payee": payee, "key": f"key-{uuid.uuid4().hex}", "escrow": escrow}
                )
                third = time.monotonic()
                await complete.run(
                    connection,
                    {"customer": customer, "key": f"key-{uuid.uuid4().hex}", "escrow": escrow},
                )
                end = time.monotonic()
                tally.request_latencies += [
                    (middle, middle - began),
                    (third, third - middle),
                    (end, end - third),
                ]
                tally.requests += 3
                tally.completed_flows += 1

            return settle
        if scenario == "webhook":
            program = self.program("webhook")

            async def webhook(tally: Tally) -> None:
                self.next_order += 1
                g = self.next_order
                await program.run(
                    connection,
                    {
                        "event": w.order_event(g),
                        "pi": w.order_pi(g),
                        "order": self.config.order_base + g - 1,
                    },
                )
                tally.acked.append(g)
                tally.new_events.append(time.monotonic())

            return webhook
        if scenario == "replay":
            program = self.program("replay")

            async def replay(tally: Tally) -> None:
                user, key, _ = self.replay_set[rng.randrange(len(self.replay_set))]
                await program.run(connection, {"user": user, "key": key})
                tally.replays += 1

            return replay
        raise ValueError(f"no SQL baseline for {scenario!r}")

    async def setup(self) -> dict[str, Any]:
        """Completed Idempotency-Keys for scenario 6, and 32 concurrent requests that
        share one key (exactly one may execute)."""
        _, host = self.host("service")
        clients = self.config.escrow_clients
        connections = [await self.connect("service") for _ in range(clients)]
        try:
            todo = [
                (
                    w.replay_user(i % clients + 1),
                    f"key-{uuid.uuid4().hex}",
                    w.payee(i % clients + 1),
                )
                for i in range(self.config.replay_keys)
            ]

            async def create(conn: Connection, batch: list[tuple[str, str, str]]) -> None:
                for user, key, payee in batch:
                    headers = [self.auth(user), ("Idempotency-Key", key)]
                    headers.append(("Content-Type", "application/json"))
                    raw = http_request(
                        "POST", "/api/v1/escrows", host, headers, w.escrow_body(payee)
                    )
                    expect(await conn.request(raw), 201, replayed=False)

            await asyncio.gather(
                *(create(conn, todo[i::clients]) for i, conn in enumerate(connections))
            )
            self.replay_set = todo
            # 32 identical requests at once, sharing one key.
            shared = f"key-{uuid.uuid4().hex}"
            user, payee = w.replay_user(0), w.payee(0)
            headers = [
                self.auth(user),
                ("Idempotency-Key", shared),
                ("Content-Type", "application/json"),
            ]
            raw = http_request("POST", "/api/v1/escrows", host, headers, w.escrow_body(payee))
            # Fresh connections: on a busy machine some of the first ones sat idle past
            # the server's keep-alive timeout while the others were still creating.
            for conn in connections:
                conn.close()
            connections = [await self.connect("service") for _ in range(clients)]
            responses = await asyncio.gather(*(conn.request(raw) for conn in connections))
        finally:
            for conn in connections:
                conn.close()
        outcomes: dict[str, int] = {}
        for response in responses:
            replayed = response.headers.get(b"idempotent-replayed") == b"true"
            label = f"{response.status}{' replayed' if replayed else ''}"
            outcomes[label] = outcomes.get(label, 0) + 1
        return {
            "event": "result",
            "replay_keys": len(self.replay_set),
            "shared_key": shared,
            "shared_user": user,
            "shared_outcomes": outcomes,
        }


async def accepted_by(conn: Connection, port: int, workers: list[int]) -> int | None:
    """The worker process holding the server side of ``conn`` (None if not found)."""
    assert conn.transport is not None  # noqa: S101
    client_port = int(conn.transport.get_extra_info("sockname")[1])
    for _ in range(50):
        owner = _socket_owner(client_port, port, workers)
        if owner is not None:
            return owner
        await asyncio.sleep(0.002)  # the worker has not accepted it yet
    return None


def _socket_owner(client_port: int, server_port: int, workers: list[int]) -> int | None:
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
                and fields[9] != "0"
            ):
                inode = fields[9]
                break
        if inode:
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def main(config: Config) -> None:
    load = Load(config)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def out(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    out({"event": "ready"})
    while line := await reader.readline():
        job = json.loads(line)
        try:
            await load.run(job, out)
        except Exception as exc:
            out(
                {
                    "event": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(Config(**json.loads(sys.argv[1]))))
