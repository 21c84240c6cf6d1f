"""What one operation costs the service's Python process, in-process, per scenario.

``.venv/bin/python -m bench.cpu [--operations N] [--repeats R] [--only a,b] [--instructions N]
[--layers]``

The HTTP benchmark's throughput on this shared 2-core machine moves by a tenth between
runs, which hides a change of a few percent in what a request costs. This sends the
HTTP benchmark's requests straight to the ASGI application (``create_app`` as
``payments-api serve`` builds it: every middleware, the rate limiter on at a limit never
reached, JSON request logs at INFO written to /dev/null), one at a time, and reports:

- **CPU us / op**: ``time.process_time()`` around N operations (this process's user and
  system time; the time spent waiting for PostgreSQL is not counted), median of R rounds;
- **instructions / op** (``--instructions N``): the user-space instructions of N
  operations counted by valgrind's callgrind in a process of its own, after warm-up.
  Deterministic whatever else the machine runs, so fit to compare two versions of the
  code (run this in both checkouts); blind to the kernel's share (socket writes) and to
  cache misses.

Scenarios (``--only``): ``settlement`` (escrow create, accept, complete with
Idempotency-Keys: one op is the three requests), ``webhook`` (a signed
``payment_intent.succeeded`` for a distinct pending top-up order), ``replay`` (the same
``POST /api/v1/escrows`` again with its key: answered from the stored response),
``balance`` (``GET /api/v1/me/balance``, one user: its token verified once, then cached),
``earnings`` (``GET /api/v1/me/earnings``: page 1 of a payee's 1,000 entries and the
summary).

``--layers`` adds, per scenario, where that CPU goes: each ASGI layer's own share
(its inclusive CPU less the next layer's), measured in an extra round with every layer
wrapped in a clock (which costs a little CPU of its own, so the total is a bit above the
timed rounds'), and the share spent inside asyncpg's query calls, in whichever layer
they are made: the protocol, the socket and the event loop's wait for PostgreSQL, the
part of a request that a baseline sending the same statements pays as well.

Each run uses a database of its own (``payments_bench_cpu_<pid>``), dropped at the end.
Uvicorn's share (the same for any app) is not in these figures. The service against
baseline C for the balance read: ``bench/readpath.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg
from tests.db_setup import admin_url

from bench import workload as w
from bench.readpath import callgrind_instructions, service_app, settings_for
from bench.seed import create_database, order_id, seed
from payments_api.db import asyncpg_dsn

SCENARIOS = ("settlement", "webhook", "replay", "balance", "earnings")
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
CHILD = "--instructions-child"


def sizes(operations: int) -> w.Sizes:
    return w.Sizes(
        balance_users=1,
        earnings_rows=1_000,
        orders=operations * 20 + 1_000,  # every webhook delivery pays a distinct order
        deep_page=1,
        escrow_clients=1,
        replay_keys=1,
    )


async def request(
    app: App,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request as uvicorn hands it to the app: status, headers, body."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent: list[dict[str, Any]] = []
    delivered = False
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()  # the client stays until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    disconnected.set()
    start = sent[0]
    response_headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    return int(start["status"]), response_headers, b"".join(m.get("body", b"") for m in sent[1:])


def expect(status: int, wanted: int, body: bytes, what: str) -> None:
    if status != wanted:
        raise RuntimeError(f"{what}: {status} {body[:300]!r}")


class Scenarios:
    """One operation of each scenario, on a seeded database."""

    def __init__(self, app: App, order_base: int) -> None:
        self.app = app
        self.order_base = order_base
        self.next_order = 0
        self.events = w.EventTemplate()
        tokens = w.mint_tokens([w.customer(0), w.balance_user(1)], ["customer"])
        tokens.update(w.mint_tokens([w.payee(0), w.EARNINGS_PAYEE], ["payee"]))
        self.auth = {user: (b"authorization", f"Bearer {t}".encode()) for user, t in tokens.items()}
        self.json = (b"content-type", b"application/json")
        self.replay_key = f"bench-cpu-{uuid.uuid4().hex}"
        self.replayed_once = False  # the first replay request executes the route

    def _keyed(self, user: str, key: str | None = None) -> list[tuple[bytes, bytes]]:
        return [
            self.auth[user],
            self.json,
            (b"idempotency-key", (key or uuid.uuid4().hex).encode()),
        ]

    async def settlement(self) -> None:
        customer, payee = w.customer(0), w.payee(0)
        status, _, body = await request(
            self.app, "POST", "/api/v1/escrows", self._keyed(customer), w.escrow_body(payee)
        )
        expect(status, 201, body, "create")
        escrow = json.loads(body)["id"]
        for user, step in ((payee, "accept"), (customer, "complete")):
            path = f"/api/v1/escrows/{escrow}/{step}"
            status, _, body = await request(self.app, "POST", path, self._keyed(user))
            expect(status, 200, body, step)

    async def webhook(self) -> None:
        self.next_order += 1
        g = self.next_order
        payload = self.events.body(g, order_id(self.order_base, g))
        headers = [self.json, (b"stripe-signature", w.stripe_signature(payload).encode())]
        status, _, body = await request(
            self.app, "POST", "/api/v1/webhooks/stripe", headers, payload
        )
        expect(status, 200, body, "webhook")
        if json.loads(body)["status"] != "processed":
            raise RuntimeError(f"webhook: {body[:300]!r}")

    async def replay(self) -> None:
        status, headers, body = await request(
            self.app,
            "POST",
            "/api/v1/escrows",
            self._keyed(w.customer(0), self.replay_key),
            w.escrow_body(w.payee(0)),
        )
        expect(status, 201, body, "replay")
        if self.replayed_once and headers.get("idempotent-replayed") != "true":
            raise RuntimeError("replay: the request was executed again")
        self.replayed_once = True

    async def balance(self) -> None:
        headers = [self.auth[w.balance_user(1)]]
        status, _, body = await request(self.app, "GET", "/api/v1/me/balance", headers)
        expect(status, 200, body, "balance")

    async def earnings(self) -> None:
        headers = [self.auth[w.EARNINGS_PAYEE]]
        status, _, body = await request(self.app, "GET", "/api/v1/me/earnings", headers)
        expect(status, 200, body, "earnings")

    def operation(self, name: str) -> Callable[[], Awaitable[None]]:
        operation: Callable[[], Awaitable[None]] = getattr(self, name)
        return operation


async def cpu_per_operation(
    url: str, names: Sequence[str], n: int, repeats: int
) -> dict[str, list[float]]:
    """CPU microseconds per operation, per scenario and round."""
    facts = await seed(url, sizes(n * repeats))
    figures: dict[str, list[float]] = {name: [] for name in names}
    async with service_app(settings_for(url)) as app:
        scenarios = Scenarios(app, facts["order_base"])
        for name in names:  # warm-up: first-use work (plans, caches) is not measured
            for _ in range(max(20, n // 10)):
                await scenarios.operation(name)()
        for k in range(repeats):
            for name in names if k % 2 == 0 else list(reversed(names)):
                operation = scenarios.operation(name)
                started = time.process_time()
                for _ in range(n):
                    await operation()
                figures[name].append((time.process_time() - started) / n * 1e6)
            print(
                f"round {k + 1}/{repeats}: "
                + ", ".join(f"{name} {figures[name][-1]:.0f} us" for name in names),
                file=sys.stderr,
            )
    return figures


# The layers of the application, outermost first, as ``create_app`` stacks them; each
# entry: a label and the callable whose inclusive CPU is clocked (module, attribute path).
LAYERS: tuple[tuple[str, str, str], ...] = (
    ("framework, outside ours", "fastapi.applications", "FastAPI.__call__"),
    ("request context", "payments_api.kit.middleware", "RequestContextMiddleware.__call__"),
    ("rate limit", "payments_api.kit.ratelimit", "RateLimitMiddleware.__call__"),
    ("idempotency", "payments_api.idempotency.middleware", "IdempotencyMiddleware.__call__"),
    (
        "routing, dependencies, serialization",
        "starlette.middleware.exceptions",
        "ExceptionMiddleware.__call__",
    ),
    ("route", "fastapi.routing", "run_endpoint_function"),
)
LAYER_LABELS = tuple(label for label, _, _ in LAYERS)
DRIVER_CALLS = ("fetch", "fetchrow", "fetchval", "execute", "executemany")


@contextlib.contextmanager
def layer_clocks() -> Iterator[dict[str, int]]:
    """While active, the CPU nanoseconds spent inside each of ``LAYERS`` (inclusive)
    and inside asyncpg's query calls (key ``"asyncpg"``), summed over the calls."""
    from asyncpg.connection import Connection
    from asyncpg.prepared_stmt import PreparedStatement

    spent: dict[str, int] = dict.fromkeys([*LAYER_LABELS, "asyncpg"], 0)
    depth = [0]  # driver calls nest (fetchval calls fetchrow): count the outermost only
    saved: list[tuple[Any, str, Any]] = []

    def clocked(original: Any, label: str, driver: bool = False) -> Any:
        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if driver:
                depth[0] += 1
            started = time.process_time_ns()
            try:
                return await original(*args, **kwargs)
            finally:
                if not driver or depth[0] == 1:
                    spent[label] += time.process_time_ns() - started
                if driver:
                    depth[0] -= 1

        return wrapper

    for label, module_name, path in LAYERS:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, clocked(getattr(owner, name), label))
    for cls in (Connection, PreparedStatement):
        for name in DRIVER_CALLS:
            if hasattr(cls, name):
                saved.append((cls, name, getattr(cls, name)))
                setattr(cls, name, clocked(getattr(cls, name), "asyncpg", driver=True))
    try:
        yield spent
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def own_shares(spent: dict[str, int], n: int) -> dict[str, float]:
    """Microseconds per operation of each layer's own work (inclusive less the next
    layer's), plus ``"total"`` and ``"asyncpg"``."""
    labels = LAYER_LABELS
    shares = {
        label: (spent[label] - (spent[labels[i + 1]] if i + 1 < len(labels) else 0)) / n / 1000
        for i, label in enumerate(labels)
    }
    shares["total"] = spent[labels[0]] / n / 1000
    shares["asyncpg"] = spent["asyncpg"] / n / 1000
    return shares


async def layer_shares(url: str, names: Sequence[str], n: int) -> dict[str, dict[str, float]]:
    """``own_shares`` of ``n`` operations of each scenario, one at a time, on the
    database the timed rounds seeded (its unpaid orders suffice: see ``sizes``)."""
    shares: dict[str, dict[str, float]] = {}
    async with service_app(settings_for(url)) as app:
        scenarios = Scenarios(app, await _order_base(url))
        scenarios.next_order = await _orders_paid(url)
        for name in names:
            operation = scenarios.operation(name)
            for _ in range(max(20, n // 10)):
                await operation()
            with layer_clocks() as spent:
                for _ in range(n):
                    await operation()
            shares[name] = own_shares(spent, n)
    return shares


def render_layers(shares: dict[str, dict[str, float]]) -> str:
    labels = LAYER_LABELS
    lines = [
        "CPU us per operation by layer (its own work, nested layers excluded), and inside "
        "asyncpg's query calls whatever the layer:",
        "",
        "| scenario | total | " + " | ".join(labels) + " | asyncpg calls |",
        "|---|" + "---:|" * (len(labels) + 2),
    ]
    for name, share in shares.items():
        cells = [f"{share['total']:.0f}", *(f"{share[label]:.0f}" for label in labels)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share['asyncpg']:.0f} |")
    return "\n".join(lines)


def count_instructions(url: str, name: str, n: int) -> int:
    """User-space instructions per operation of ``name``, under callgrind."""
    return callgrind_instructions(["bench.cpu", CHILD, url, name, str(n)], n)


async def instructions_child(url: str, name: str, n: int) -> None:
    """Runs under callgrind: warms up, then counts ``n`` operations only."""
    async with service_app(settings_for(url)) as app:
        order_base = await _order_base(url)
        scenarios = Scenarios(app, order_base)
        scenarios.next_order = await _orders_paid(url)
        operation = scenarios.operation(name)
        for _ in range(50):
            await operation()
        control = ["callgrind_control", "--instr=on", str(os.getpid())]
        await asyncio.to_thread(subprocess.run, control, check=True, capture_output=True)
        for _ in range(n):
            await operation()
        control[1] = "--instr=off"
        await asyncio.to_thread(subprocess.run, control, check=True, capture_output=True)


async def _order_base(url: str) -> int:
    return await _count(url, "SELECT min(id) FROM orders")


async def _orders_paid(url: str) -> int:
    """Seeded orders already paid by earlier runs on this database."""
    return await _count(url, "SELECT count(*) FROM webhook_events")


async def _count(url: str, query: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


async def drop_database(admin: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def render(
    figures: dict[str, list[float]], instructions: dict[str, int], n: int, command: str
) -> str:
    lines = [
        f"`{command}` (git {git_head()}, load average {os.getloadavg()[0]:.1f}): "
        f"{n} operations per scenario and round, medians of {len(next(iter(figures.values())))}"
        " rounds.",
        "",
        "| scenario | CPU us / op (median) | rounds | instructions / op |",
        "|---|---:|---|---:|",
    ]
    for name, rounds in figures.items():
        spread = ", ".join(f"{value:.0f}" for value in rounds)
        counted = f"{instructions[name]:,}" if name in instructions else "-"
        lines.append(f"| {name} | {statistics.median(rounds):.0f} | {spread} | {counted} |")
    return "\n".join(lines)


def git_head() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == [CHILD]:
        url, name, n = arguments[1:]
        asyncio.run(instructions_child(url, name, int(n)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("--operations", type=int, default=500, help="N per scenario and round")
    parser.add_argument("--repeats", type=int, default=5, help="R rounds")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count the instructions of N operations per scenario under callgrind",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also measure each layer's share of the CPU (an extra round of N operations)",
    )
    args = parser.parse_args(arguments)
    names = [name for name in args.only.split(",") if name]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    admin = os.environ.get("BENCH_DATABASE_URL") or admin_url()
    database = f"payments_bench_cpu_{os.getpid()}"
    url = create_database(admin, database)
    try:
        figures = asyncio.run(cpu_per_operation(url, names, args.operations, args.repeats))
        instructions = {
            name: count_instructions(url, name, args.instructions)
            for name in (names if args.instructions else ())
        }
        shares = asyncio.run(layer_shares(url, names, args.operations)) if args.layers else {}
    finally:
        asyncio.run(drop_database(admin, database))
    command = ".venv/bin/python -m bench.cpu" + "".join(f" {a}" for a in arguments)
    print(render(figures, instructions, args.operations, command))
    if shares:
        print("\n" + render_layers(shares))
    return 0


if __name__ == "__main__":
    sys.exit(main())
