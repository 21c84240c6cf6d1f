"""Transactions and statements per request, counted by PostgreSQL.

``.venv/bin/python -m bench.commits [--requests N] [--write]``

Every benchmarked request kind is sent through the real application, in this process
(httpx's ASGI transport, no HTTP server, sequentially: one request at a time), on a
small freshly seeded database of its own (``payments_bench_commits``). For each kind:

- **xact_commit / request**: ``pg_stat_database.xact_commit`` of that database, read
  before and after a batch of requests, divided by the batch size. Every transaction
  counts: one BEGIN ... COMMIT, and every statement sent outside a transaction (it
  commits by itself). Exact, not sampled: nothing else uses the database (autovacuum is
  off for its tables, the counters are read over a connection to another database),
  each batch runs on a fresh engine whose connections are closed before the second
  reading (a backend reports its counters when it exits), and the fixed cost of a
  batch (the engine's first-connection queries) is removed by running it with N and
  with 2N requests and dividing the difference by N.
- **xact_rollback / request**: the same for transactions rolled back.
- **statements / request** and **COMMIT sent / request**: what the application sent,
  recorded at the asyncpg level (``bench/replay.py``'s recorder), same N / 2N method.

Write requests are counted twice: as they run now (DB-only routes such as the escrow
transitions use the one-transaction Idempotency-Key protocol) and with every route
forced onto the lease protocol (the key claimed and the response stored in
transactions of their own, as every write route did before issue #22).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from tests.db_setup import admin_url

from bench import workload as w
from bench.replay import Recorder
from bench.seed import create_database, order_id, seed
from payments_api.db import asyncpg_dsn
from payments_api.idempotency.middleware import IdempotencyMiddleware
from payments_api.main import build_state, create_app, dispose_state
from payments_api.settings import Settings

DATABASE = "payments_bench_commits"
SIZES = w.Sizes(
    balance_users=100,
    earnings_rows=100,
    orders=2_000,
    deep_page=1,
    escrow_clients=4,
    replay_keys=4,
)
RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- commits:start -->", "<!-- commits:end -->"
DB_ONLY_WRITES = ("escrow_create", "escrow_accept", "escrow_complete")
SETTLEMENT_TARGET = 12


@dataclass(frozen=True, slots=True)
class Counts:
    commits: int
    rollbacks: int
    statements: int
    commit_statements: int


@dataclass(frozen=True, slots=True)
class PerRequest:
    kind: str
    protocol: str
    commits: float
    rollbacks: float
    statements: float
    commit_statements: float


class Counters:
    """pg_stat_database of the benchmark database, read from the admin database."""

    def __init__(self, admin_dsn: str, database: str) -> None:
        self.admin_dsn = admin_dsn
        self.database = database

    async def read(self) -> tuple[int, int]:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await self._quiet(connection)
            row = await connection.fetchrow(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.database,
            )
        finally:
            await connection.close()
        return int(row["xact_commit"]), int(row["xact_rollback"])

    async def _quiet(self, connection: Any) -> None:
        """Until no backend is connected to the database: an exiting backend has
        reported its counters once it is gone from pg_stat_activity."""
        deadline = time.monotonic() + 30
        while await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.database
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"connections to {self.database} stayed open")
            await asyncio.sleep(0.05)


Request = Callable[[httpx.AsyncClient, int], Awaitable[None]]


class Bench:
    def __init__(self, settings: Settings, counters: Counters, order_base: int) -> None:
        self.settings = settings
        self.counters = counters
        self.order_base = order_base
        self.tokens = w.mint_tokens([w.customer(0), w.balance_user(1)], ["customer"])
        self.tokens.update(w.mint_tokens([w.payee(0)], ["payee"]))
        self.escrows: list[int] = []
        self.accepted = 0
        self.completed = 0
        self.orders = 0
        self.events = w.EventTemplate()
        self.replay_key = f"key-{uuid.uuid4().hex}"

    def headers(self, user: str, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    async def batch(self, request: Request, n: int) -> Counts:
        """``n`` requests on a fresh engine; what PostgreSQL and asyncpg counted."""
        before = await self.counters.read()
        app = create_app(self.settings)
        state = await build_state(self.settings)
        app.state.resources = state
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                with Recorder.recording() as calls:
                    for i in range(n):
                        await request(client, i)
        finally:
            await dispose_state(state)
        after = await self.counters.read()
        verbs = [call.sql.strip().rstrip(";").split()[0].upper() for call in calls]
        return Counts(
            commits=after[0] - before[0],
            rollbacks=after[1] - before[1],
            statements=len(calls),
            commit_statements=verbs.count("COMMIT"),
        )

    async def per_request(self, kind: str, protocol: str, request: Request, n: int) -> PerRequest:
        once = await self.batch(request, n)
        twice = await self.batch(request, 2 * n)
        return PerRequest(
            kind,
            protocol,
            commits=(twice.commits - once.commits) / n,
            rollbacks=(twice.rollbacks - once.rollbacks) / n,
            statements=(twice.statements - once.statements) / n,
            commit_statements=(twice.commit_statements - once.commit_statements) / n,
        )

    # --- the request kinds ---------------------------------------------------------------
    async def balance(self, client: httpx.AsyncClient, _: int) -> None:
        response = await client.get("/api/v1/me/balance", headers=self.headers(w.balance_user(1)))
        _check(response, 200)

    async def create(self, client: httpx.AsyncClient, _: int) -> None:
        response = await client.post(
            "/api/v1/escrows",
            content=w.escrow_body(w.payee(0)),
            headers={
                **self.headers(w.customer(0), f"key-{uuid.uuid4().hex}"),
                "Content-Type": "application/json",
            },
        )
        _check(response, 201)
        self.escrows.append(int(response.json()["id"].removeprefix("esc_")))

    async def accept(self, client: httpx.AsyncClient, _: int) -> None:
        escrow = self.escrows[self.accepted]
        self.accepted += 1
        response = await client.post(
            f"/api/v1/escrows/esc_{escrow}/accept",
            headers=self.headers(w.payee(0), f"key-{uuid.uuid4().hex}"),
        )
        _check(response, 200)

    async def complete(self, client: httpx.AsyncClient, _: int) -> None:
        escrow = self.escrows[self.completed]
        self.completed += 1
        response = await client.post(
            f"/api/v1/escrows/esc_{escrow}/complete",
            headers=self.headers(w.customer(0), f"key-{uuid.uuid4().hex}"),
        )
        _check(response, 200)

    async def webhook(self, client: httpx.AsyncClient, _: int) -> None:
        self.orders += 1
        g = self.orders
        body = self.events.body(g, order_id(self.order_base, g))
        response = await client.post(
            "/api/v1/webhooks/stripe",
            content=body,
            headers={
                "Stripe-Signature": w.stripe_signature(body),
                "Content-Type": "application/json",
            },
        )
        _check(response, 200)
        if response.json()["status"] != "processed":
            raise RuntimeError(f"webhook: {response.text[:300]}")

    async def replay(self, client: httpx.AsyncClient, _: int) -> None:
        response = await client.post(
            "/api/v1/escrows",
            content=w.escrow_body(w.payee(0)),
            headers={
                **self.headers(w.customer(0), self.replay_key),
                "Content-Type": "application/json",
            },
        )
        _check(response, 201)
        if response.headers.get("idempotent-replayed") != "true":
            raise RuntimeError("the replay was executed again")


def _check(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")


@contextmanager
def lease_protocol_everywhere() -> Any:
    """Every write route on the lease protocol, as before issue #22."""
    original = IdempotencyMiddleware._route_of

    def on_lease(self: IdempotencyMiddleware, scope: Any) -> Any:
        entry = original(self, scope)
        return None if entry is None else dataclasses.replace(entry, one_transaction=False)

    IdempotencyMiddleware._route_of = on_lease  # type: ignore[method-assign]
    try:
        yield
    finally:
        IdempotencyMiddleware._route_of = original  # type: ignore[method-assign]


async def run(n: int, url: str, admin: str) -> list[PerRequest]:
    facts = await seed(url, SIZES)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        tables = await connection.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public'"
        )
        for row in tables:
            await connection.execute(f"ALTER TABLE {row['t']} SET (autovacuum_enabled = false)")
    finally:
        await connection.close()
    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),
        stripe_secret_key=SecretStr(w.STRIPE_TEST_KEY),
        stripe_api_base="http://127.0.0.1:9",  # nothing may call Stripe
        stripe_max_network_retries=0,
        stripe_webhook_secrets=[SecretStr(w.WEBHOOK_SECRET)],
        jwt_secret=SecretStr(w.JWT_SECRET),
        rate_limit_per_user="100000000/minute",
        rate_limit_per_ip="100000000/minute",
        log_level="WARNING",
    )
    admin_dsn = asyncpg_dsn(make_url(admin).set(database="postgres").render_as_string(False))
    bench = Bench(settings, Counters(admin_dsn, DATABASE), facts["order_base"])
    # The key replayed later, completed once (with a warm-up of everything else).
    await bench.batch(_first_of_replay(bench), 1)
    rows = [await bench.per_request("balance", "read", bench.balance, n)]
    for protocol in ("one transaction", "lease (before #22)"):
        context = lease_protocol_everywhere() if protocol.startswith("lease") else _nothing()
        with context:
            bench.escrows, bench.accepted, bench.completed = [], 0, 0
            rows.append(await bench.per_request("escrow_create", protocol, bench.create, n))
            rows.append(await bench.per_request("escrow_accept", protocol, bench.accept, n))
            rows.append(await bench.per_request("escrow_complete", protocol, bench.complete, n))
            rows.append(await bench.per_request("replay", protocol, bench.replay, n))
    rows.append(await bench.per_request("webhook", "(no key)", bench.webhook, n))
    return rows


def _first_of_replay(bench: Bench) -> Request:
    async def first(client: httpx.AsyncClient, _: int) -> None:
        response = await client.post(
            "/api/v1/escrows",
            content=w.escrow_body(w.payee(0)),
            headers={
                **bench.headers(w.customer(0), bench.replay_key),
                "Content-Type": "application/json",
            },
        )
        _check(response, 201)

    return first


@contextmanager
def _nothing() -> Any:
    yield


def render(rows: Sequence[PerRequest], n: int, command: str) -> str:
    lines = [
        "## Transactions per request (PostgreSQL's counters)",
        "",
        f"Measured by `bench/commits.py` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC), command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Each figure is (count over {2 * n} requests - count over {n}) / {n}, on a quiet "
        "database of its own, requests one at a time through the application in-process. "
        "xact_commit and xact_rollback are `pg_stat_database`'s: every transaction, an "
        "explicit BEGIN ... COMMIT or a statement sent outside one. Statements and COMMITs "
        "sent are recorded at the asyncpg level (BEGIN, COMMIT, SAVEPOINT included).",
        "",
        "| request | Idempotency-Key protocol | xact_commit / request | xact_rollback / request "
        "| statements sent / request | COMMIT sent / request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.kind} | {row.protocol} | {row.commits:.2f} | {row.rollbacks:.2f} "
            f"| {row.statements:.2f} | {row.commit_statements:.2f} |"
        )
    ok = all(
        row.commits == 1 and row.commit_statements == 1
        for row in rows
        if row.kind in DB_ONLY_WRITES and row.protocol == "one transaction"
    )
    settlement = sum(
        row.statements
        for row in rows
        if row.kind in DB_ONLY_WRITES and row.protocol == "one transaction"
    )
    lines += [
        "",
        f"- Statements per settlement (escrow create + accept + complete, one transaction "
        f"each): {settlement:.0f} (issue #22's target: <= {SETTLEMENT_TARGET})",
        f"- {'ok' if ok else 'FAIL'}: exactly one COMMIT per DB-only write request "
        "(escrow create, accept, complete with an Idempotency-Key; xact_commit delta / "
        "requests = 1.00)",
    ]
    return "\n".join(lines)


def current_section() -> str | None:
    """This benchmark's section of RESULTS.md, if there is one."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def write_section(text: str) -> None:
    current = RESULTS.read_text()
    block = f"{START}\n{text}\n{END}"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        _, tail = rest.split(END, 1)
        RESULTS.write_text(head + block + tail)
    else:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + block + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commits", description=__doc__)
    parser.add_argument("--requests", type=int, default=20, help="N (batches of N and 2N)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    admin = os.environ.get("BENCH_DATABASE_URL") or admin_url()
    url = create_database(admin, DATABASE)
    command = ".venv/bin/python -m bench.commits" + "".join(
        f" {a}" for a in (sys.argv[1:] if argv is None else argv)
    )
    rows = asyncio.run(run(args.requests, url, admin))
    text = render(rows, args.requests, command)
    print(text)
    if args.write:
        write_section(text)
    ok = "FAIL" not in text
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
