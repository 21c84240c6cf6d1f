"""Ledger benchmark: settlements per second through ``LedgerService`` against raw SQL.

Run ``.venv/bin/python -m bench.ledger`` (``--quick`` for a ~1 s-per-measurement smoke
run, ``--help`` for the options). On a database it drops and recreates
(``payments_bench``, migrated with alembic) it seeds users with funded ``available`` and
``escrow`` balances, then times one *settlement* (a ledger transaction of three
postings: payer escrow -1000, payee available +800, fee +200) in three scenarios:

(a) baseline  raw asyncpg, one pooled connection per client, the service's own SQL
              statements for one settlement in one transaction, no SQLAlchemy;
(b) service   ``LedgerService(session).post`` in ``sessionmaker.begin()`` per
              settlement; every fee goes to the platform's hot, sharded
              ``platform_fees`` account;
(c) no shared the same as (b), but the fee goes to a third user's ``available``, so
              concurrent settlements share no account at all.

Concurrent clients always settle between distinct users. Every measurement starts after
``VACUUM ANALYZE`` of the ledger tables and a ``CHECKPOINT``; the scenarios are
interleaved (a, b, c, a, b, c, ...) and each is repeated; the medians are reported.
The ledger's invariants are checked with SQL at the end (exit status 1 when broken).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import asyncpg as sqlalchemy_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import TextClause
from tests.db_setup import _recreate, admin_url

from payments_api.db import asyncpg_dsn, create_engine, create_sessionmaker, to_asyncpg_url
from payments_api.ledger import statements
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.repository import LedgerRepository
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.migrations import alembic_config
from payments_api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "bench" / "RESULTS.md"
CURRENCY = "usd"
PAYER_DEBIT = 1_000
PAYEE_CREDIT = 800
FEE = PAYER_DEBIT - PAYEE_CREDIT
POSTINGS_PER_SETTLEMENT = 3
SEED_AVAILABLE = 1_000_000
SEED_ESCROW = 1_000_000_000  # a million settlements' worth per user: never runs dry
SEED_BATCH = 100
SEED_WORKERS = 4
LEDGER_TABLES = ("ledger_transactions", "ledger_postings", "ledger_balances", "ledger_accounts")
TARGET_SERVICE_VS_BASELINE = 0.5
TARGET_SERVICE_VS_UNSHARED = 0.8
TARGET_UNSHARED_AT_CLIENTS = 32
DISTURBED_ABOVE = 0.25
"""Cores of 'other' CPU (neither this process nor its PostgreSQL backends) beyond which
a measurement is flagged as disturbed by other work on the machine."""
RETRIES_WHEN_DISTURBED = 2
PRIME_SECONDS = 0.5


# --- the baseline's SQL --------------------------------------------------------------
# These are the very statements LedgerRepository runs, compiled from the module constants
# of ``payments_api.ledger.statements`` by SQLAlchemy's asyncpg dialect: the same text
# (with :name turned into $n) that the service sends to asyncpg, so the baseline cannot
# drift from the service.
_ASYNCPG_DIALECT = sqlalchemy_asyncpg.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class RawStatement:
    name: str
    sql: str
    params: tuple[str, ...]
    """Bind parameter names in $1..$n order."""

    @classmethod
    def of(cls, name: str, clause: TextClause) -> RawStatement:
        compiled = clause.compile(dialect=_ASYNCPG_DIALECT)
        return cls(name, compiled.string, tuple(compiled.positiontup or ()))

    def args(self, **values: object) -> list[object]:
        if set(values) != set(self.params):
            raise TypeError(f"{self.name} takes {sorted(self.params)}, got {sorted(values)}")
        return [values[name] for name in self.params]


# What ``LedgerService.post`` sends when every account exists (the benchmark seeds them):
# two round trips.
INSERT_TRANSACTION_LOCK_ACCOUNTS = RawStatement.of(
    "INSERT_TRANSACTION_LOCK_ACCOUNTS", statements.INSERT_TRANSACTION_LOCK_ACCOUNTS
)
# With the balance alerts' and auto-reloads' thresholds moved in the same statement, as
# ``post`` sends it (``statements.APPLY_OBSERVED``).
APPLY_DELTAS_INSERT_POSTINGS = RawStatement.of(
    "APPLY_DELTAS_INSERT_POSTINGS", statements.APPLY_OBSERVED
)


# --- workload --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Settlement:
    cause_key: str
    payer: str
    payee: str
    fee_payee: str | None
    """A third user credited with the fee, or None for the platform's ``platform_fees``."""

    def postings(self) -> list[PostingSpec]:
        fee_account = (
            AccountRef.platform(AccountKind.platform_fees, CURRENCY)
            if self.fee_payee is None
            else AccountRef.user(self.fee_payee, AccountKind.available, CURRENCY)
        )
        return [
            PostingSpec(AccountRef.user(self.payer, AccountKind.escrow, CURRENCY), -PAYER_DEBIT),
            PostingSpec(AccountRef.user(self.payee, AccountKind.available, CURRENCY), PAYEE_CREDIT),
            PostingSpec(fee_account, FEE),
        ]

    def transaction(self) -> NewTransaction:
        return NewTransaction(
            type="settlement",
            cause_type=CauseType.escrow,
            cause_key=self.cause_key,
            postings=self.postings(),
        )


Op = Callable[[Settlement], Awaitable[None]]


class Scenario:
    key: str
    title: str
    fee_to_platform: bool

    def client(self) -> AbstractAsyncContextManager[Op]:
        """What one client settles with (it may hold a connection for its lifetime)."""
        raise NotImplementedError


class Baseline(Scenario):
    key, title, fee_to_platform = "a", "baseline (raw asyncpg)", True

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Op]:
        async with self.pool.acquire() as connection:

            async def op(settlement: Settlement) -> None:
                async with connection.transaction():
                    await settle_raw(connection, settlement)

            yield op


async def settle_raw(connection: Any, settlement: Settlement) -> None:
    """What ``LedgerService.post`` sends to PostgreSQL for one settlement, in its order:
    the transaction inserted with its accounts looked up and single-shard balances
    locked; the balance check; then the hot account's shard picked, the deltas applied
    and the postings inserted."""
    postings = settlement.postings()
    keys = sorted({p.account.key for p in postings})
    rows = await connection.fetch(
        INSERT_TRANSACTION_LOCK_ACCOUNTS.sql,
        *INSERT_TRANSACTION_LOCK_ACCOUNTS.args(
            frozen_user=None,
            type="settlement",
            cause_type=CauseType.escrow.value,
            cause_key=settlement.cause_key,
            description=None,
            metadata="{}",
            reverses_transaction_id=None,
            owners=[k[0] for k in keys],
            kinds=[k[1] for k in keys],
            currencies=[k[2] for k in keys],
        ),
    )
    if rows[0]["transaction_id"] is None:
        raise RuntimeError(f"cause key {settlement.cause_key} was already used")
    transaction_id = int(rows[0]["transaction_id"])
    accounts = {(row["owner_user_id"] or "", row["kind"], row["currency"]): row for row in rows}
    per_account: dict[int, int] = defaultdict(int)
    for posting in postings:
        per_account[int(accounts[posting.account.key]["id"])] += posting.amount
    single: dict[tuple[int, int], int] = {}
    hot: dict[int, int] = {}
    for row in accounts.values():
        account_id, delta = int(row["id"]), per_account[int(row["id"])]
        if row["shard_count"] > 1:
            hot[account_id] = delta
            continue
        if delta < 0 and row["balance"] + delta < 0 and not row["may_go_negative"]:
            raise RuntimeError(f"insufficient funds in account {account_id}")
        single[(account_id, 0)] = delta
    ordered = sorted(k for k, v in single.items() if v != 0)
    # The users' available balances the postings change (the thresholds ``post`` checks).
    observed = [
        row
        for row in accounts.values()
        if row["owner_user_id"] is not None
        and row["kind"] == AccountKind.available.value
        and single.get((int(row["id"]), 0))
    ]
    hot_ids = sorted(a for a, d in hot.items() if d != 0)
    await connection.fetch(
        APPLY_DELTAS_INSERT_POSTINGS.sql,
        *APPLY_DELTAS_INSERT_POSTINGS.args(
            account_ids=[k[0] for k in ordered],
            shards=[k[1] for k in ordered],
            deltas=[single[k] for k in ordered],
            hot_account_ids=hot_ids,
            hot_deltas=[hot[a] for a in hot_ids],
            transaction_id=transaction_id,
            posting_account_ids=[int(accounts[p.account.key]["id"]) for p in postings],
            currencies=[p.account.currency for p in postings],
            amounts=[p.amount for p in postings],
            observed_users=[str(row["owner_user_id"]) for row in observed],
            observed_currencies=[row["currency"] for row in observed],
            observed_available=[row["balance"] + single[(int(row["id"]), 0)] for row in observed],
        ),
    )


class Service(Scenario):
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, fee_to_platform: bool
    ) -> None:
        self.sessionmaker = sessionmaker
        self.fee_to_platform = fee_to_platform
        if fee_to_platform:
            self.key, self.title = "b", "service, fee to platform_fees"
        else:
            self.key, self.title = "c", "service, no shared account"

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Op]:
        async def op(settlement: Settlement) -> None:
            async with self.sessionmaker.begin() as session:
                await LedgerService(session).post(settlement.transaction())

        yield op


# --- measuring ---------------------------------------------------------------------------
@dataclass(slots=True)
class Totals:
    """Everything written, for the final invariant check."""

    settlements: int = 0
    to_platform: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sample:
    scenario: str
    clients: int
    repeat: int
    ops_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: Cpu
    backends: Counter[str]
    """Samples of what the benchmark's backends inside a transaction were doing."""

    def cpu_ms_per_op(self, part: str) -> float:
        cores = float(getattr(self.cpu, part))
        return cores / self.ops_per_second * 1000 if self.ops_per_second else math.nan


@dataclass(slots=True)
class Window:
    start: float
    end: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Cpu:
    """CPU cores kept busy during a window."""

    bench: float
    """This process (one Python thread runs every client)."""
    postgres: float
    """The PostgreSQL backends connected to the benchmark's database (NaN if not local)."""
    machine: float
    """The whole machine (NaN off Linux)."""

    @property
    def other(self) -> float:
        """Everything else: PostgreSQL's shared background processes, and other work on a
        shared machine that disturbs the figures."""
        return self.machine - self.bench - self.postgres


def _process_seconds(pid: int) -> float:
    """CPU seconds of a local process, from /proc (NaN when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def _machine_seconds() -> float:
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle, iowait
        return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def cpu_seconds(backends: Sequence[int]) -> tuple[float, float, float]:
    """(this process, the given PostgreSQL backends, the machine) in CPU seconds."""
    postgres = [_process_seconds(pid) for pid in backends]
    readable = [seconds for seconds in postgres if not math.isnan(seconds)]
    return (
        time.process_time(),
        sum(readable) if readable else math.nan,
        _machine_seconds(),
    )


async def cpu_in(window: Window, backends: Sequence[int]) -> Cpu:
    """Cores used by this process, ``backends`` and the machine during ``window``."""
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    began, before = time.perf_counter(), cpu_seconds(backends)
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    elapsed, after = time.perf_counter() - began, cpu_seconds(backends)
    bench, postgres, machine = ((b - a) / elapsed for a, b in zip(before, after, strict=True))
    return Cpu(bench=bench, postgres=postgres, machine=machine)


async def wait_for_quiet(limit: float) -> None:
    """Wait (at most ``limit`` seconds) until other work leaves the machine's CPUs idle."""
    deadline = time.perf_counter() + limit
    while True:
        began, before = time.perf_counter(), _machine_seconds()
        await asyncio.sleep(0.5)
        busy = (_machine_seconds() - before) / (time.perf_counter() - began)
        if not busy > DISTURBED_ABOVE or time.perf_counter() >= deadline:
            return


async def backend_pids(control: Any) -> list[int]:
    """Every PostgreSQL process working on the benchmark's database but ``control``."""
    rows = await control.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return [int(row["pid"]) for row in rows]


class Sequencer:
    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> int:
        self.next += 1
        return self.next


async def measure(
    scenario: Scenario,
    clients: int,
    repeat: int,
    users: Sequence[str],
    *,
    control: Any,
    warmup: float,
    seconds: float,
    sequence: Sequencer,
    totals: Totals,
) -> Sample:
    """``clients`` tasks settle back to back for ``warmup + seconds``; only the settlements
    completed inside the last ``seconds`` are counted."""
    per_client = len(users) // clients
    slices = [users[k * per_client : (k + 1) * per_client] for k in range(clients)]
    # The clock starts once every client holds its connection: connecting is never timed.
    holding, ready = asyncio.Barrier(clients + 1), asyncio.Event()
    window = Window(0.0, 0.0)
    latencies: list[float] = []
    errors: list[str] = []

    async def client(own: Sequence[str]) -> tuple[int, int]:
        done = to_platform = 0
        async with scenario.client() as op:
            await holding.wait()
            await ready.wait()
            turn = 0
            while (started := time.perf_counter()) < window.end:
                payer, payee, third = (own[(3 * turn + i) % len(own)] for i in range(3))
                turn += 1
                settlement = Settlement(
                    cause_key=f"bench:{scenario.key}:{clients}:{repeat}:{sequence()}",
                    payer=payer,
                    payee=payee,
                    fee_payee=None if scenario.fee_to_platform else third,
                )
                try:
                    await op(settlement)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                finished = time.perf_counter()
                done += 1
                to_platform += scenario.fee_to_platform
                if window.start <= finished <= window.end:
                    latencies.append(finished - started)
        return done, to_platform

    tasks = [asyncio.create_task(client(own)) for own in slices]
    await holding.wait()
    backends = await backend_pids(control)
    now = time.perf_counter()
    window.start, window.end = now + warmup, now + warmup + seconds
    cpu = asyncio.create_task(cpu_in(window, backends))
    where = asyncio.create_task(sample_backends(control, window))
    ready.set()
    for done, to_platform in await asyncio.gather(*tasks):
        totals.settlements += done
        totals.to_platform += to_platform
    totals.failures.extend(errors)

    latencies.sort()
    return Sample(
        scenario=scenario.key,
        clients=clients,
        repeat=repeat,
        ops_per_second=len(latencies) / seconds,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=len(errors),
        cpu=await cpu,
        backends=await where,
    )


def _normalized(sql: str) -> str:
    return " ".join(sql.split())


# pg_stat_activity shows at most track_activity_query_size (default 1024) bytes of a query.
_STATEMENT_NAMES = {
    _normalized(statement.sql)[:200]: statement.name
    for statement in (
        RawStatement.of("INSERT_ACCOUNT", statements.INSERT_ACCOUNT),
        RawStatement.of("SELECT_ACCOUNTS", statements.SELECT_ACCOUNTS),
        RawStatement.of("LOCK_BALANCES", statements.LOCK_BALANCES),
        INSERT_TRANSACTION_LOCK_ACCOUNTS,
        APPLY_DELTAS_INSERT_POSTINGS,
    )
}


def statement_name(query: str) -> str:
    """The ledger statement a backend runs (or BEGIN, COMMIT, ...; ';' is a pool ping)."""
    text = _normalized(query)
    if text in ("", ";"):
        return "ping (;)"
    if text.startswith("WITH RECURSIVE typeinfo_tree"):
        return "asyncpg type introspection"
    return _STATEMENT_NAMES.get(text[:200]) or text.split(" ", 1)[0].rstrip(";").upper()


async def sample_backends(control: Any, window: Window) -> Counter[str]:
    """Sample every ~20 ms what the client backends of the benchmark's database do while
    inside a transaction: run a statement (possibly waiting on a lock, an LWLock or IO) or
    wait for the client's next statement ("client")."""
    seen: Counter[str] = Counter()
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    while time.perf_counter() < window.end:
        rows = await control.fetch(
            """SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend' AND state <> 'idle'"""
        )
        for row in rows:
            if row["state"] != "active":
                seen["client (idle in transaction)"] += 1
                continue
            label = statement_name(row["query"])
            if row["wait_event_type"]:
                label += f" [{row['wait_event_type']}:{row['wait_event']}]"
            seen[label] += 1
        await asyncio.sleep(0.02)
    return seen


async def settle_down(control: Any) -> None:
    await control.execute(f"VACUUM ANALYZE {', '.join(LEDGER_TABLES)}")
    await control.execute("CHECKPOINT")


# --- setup ---------------------------------------------------------------------------------
def create_database(admin: str, name: str) -> str:
    """Drop and recreate ``name``, migrate it to head; returns its URL."""
    asyncio.run(_recreate(admin, name))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    config = alembic_config(to_asyncpg_url(url))
    config.attributes["configure_logger"] = False
    from alembic import command

    command.upgrade(config, "head")
    return url


async def seed(
    control: Any, sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> tuple[list[str], int]:
    """``count`` users, each funded by one 'topup' through the service; returns the user
    ids and the number of ledger transactions written."""
    await control.execute(
        "INSERT INTO users (id) SELECT 'bench_' || lpad(g::text, 6, '0')"
        " FROM generate_series(0, $1 - 1) AS g",
        count,
    )
    users = [f"bench_{i:06d}" for i in range(count)]
    async with sessionmaker.begin() as session:
        # The platform accounts, created up front so that concurrent first postings do
        # not race to create them.
        ledger = LedgerRepository(session)
        for kind in (AccountKind.stripe_balance, AccountKind.platform_fees):
            await ledger.create_account("", kind.value, CURRENCY)

    async def fund(batch: Sequence[str]) -> None:
        async with sessionmaker.begin() as session:
            service = LedgerService(session)
            for user in batch:
                await service.post(
                    NewTransaction(
                        type="topup",
                        cause_type=CauseType.system,
                        cause_key=f"bench:topup:{user}",
                        postings=[
                            PostingSpec(
                                AccountRef.user(user, AccountKind.available, CURRENCY),
                                SEED_AVAILABLE,
                            ),
                            PostingSpec(
                                AccountRef.user(user, AccountKind.escrow, CURRENCY), SEED_ESCROW
                            ),
                            PostingSpec(
                                AccountRef.platform(AccountKind.stripe_balance, CURRENCY),
                                -(SEED_AVAILABLE + SEED_ESCROW),
                            ),
                        ],
                    )
                )

    batches = [users[i : i + SEED_BATCH] for i in range(0, count, SEED_BATCH)]
    semaphore = asyncio.Semaphore(SEED_WORKERS)

    async def limited(batch: Sequence[str]) -> None:
        async with semaphore:
            await fund(batch)

    await asyncio.gather(*(limited(b) for b in batches))
    return users, count


async def warm_engine(engine: AsyncEngine, connections: int) -> None:
    """Open the pool's connections before anything is timed."""

    async def touch(release: asyncio.Event) -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            await release.wait()

    release = asyncio.Event()
    tasks = [asyncio.create_task(touch(release)) for _ in range(connections)]
    await asyncio.sleep(0.2)
    release.set()
    await asyncio.gather(*tasks)


# --- invariants -------------------------------------------------------------------------------
INVARIANTS: tuple[tuple[str, str], ...] = (
    (
        "every transaction's postings sum to zero per currency",
        """SELECT count(*) FROM (SELECT transaction_id, currency FROM ledger_postings
           GROUP BY 1, 2 HAVING sum(amount) <> 0) AS unbalanced""",
    ),
    (
        "every transaction has at least two postings",
        """SELECT count(*) FROM ledger_transactions t
           WHERE (SELECT count(*) FROM ledger_postings p WHERE p.transaction_id = t.id) < 2""",
    ),
    (
        "every account's cached balance (sum of its shards) equals the sum of its postings",
        """SELECT count(*) FROM ledger_accounts a
           LEFT JOIN (SELECT account_id, sum(balance) AS total FROM ledger_balances
                      GROUP BY 1) b ON b.account_id = a.id
           LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_postings
                      GROUP BY 1) p ON p.account_id = a.id
           WHERE coalesce(b.total, 0) <> coalesce(p.total, 0)""",
    ),
    (
        "no user available or escrow balance is below zero",
        """SELECT count(*) FROM ledger_accounts a
           JOIN ledger_balances b ON b.account_id = a.id
           WHERE a.owner_user_id IS NOT NULL AND a.kind IN ('available', 'escrow')
             AND b.balance < 0""",
    ),
)


async def check_invariants(control: Any, expected_transactions: int, to_platform: int) -> list[str]:
    """Each rule as 'ok'/'BROKEN' lines; the returned list names the broken ones."""
    broken: list[str] = []
    lines: list[str] = []
    for rule, sql in INVARIANTS:
        offenders = int(await control.fetchval(sql))
        lines.append(f"- {'ok' if offenders == 0 else 'BROKEN'}: {rule} ({offenders} offenders)")
        if offenders:
            broken.append(rule)
    transactions = int(await control.fetchval("SELECT count(*) FROM ledger_transactions"))
    ok = transactions == expected_transactions
    lines.append(
        f"- {'ok' if ok else 'BROKEN'}: ledger_transactions holds {transactions} rows, "
        f"successful settlements + seeding = {expected_transactions}"
    )
    if not ok:
        broken.append("transaction count")
    fees = int(
        await control.fetchval(
            """SELECT coalesce(sum(b.balance), 0) FROM ledger_balances b
               JOIN ledger_accounts a ON a.id = b.account_id
               WHERE a.owner_user_id IS NULL AND a.kind = 'platform_fees'"""
        )
    )
    ok = fees == FEE * to_platform
    lines.append(
        f"- {'ok' if ok else 'BROKEN'}: platform_fees = {fees} = {FEE} x {to_platform} "
        "settlements of (a) and (b)"
    )
    if not ok:
        broken.append("platform_fees total")
    print("\n".join(lines))
    return broken


# --- reporting --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    scenario: Scenario
    clients: int
    samples: list[Sample]

    @property
    def ops(self) -> float:
        return statistics.median(s.ops_per_second for s in self.samples)

    @property
    def undisturbed_ops(self) -> float:
        """Median ops/s of the runs other work did not disturb (NaN if none)."""
        clean = [s.ops_per_second for s in self.samples if not s.cpu.other > DISTURBED_ABOVE]
        return statistics.median(clean) if clean else math.nan

    def median(self, attribute: str) -> float:
        return statistics.median(float(getattr(s, attribute)) for s in self.samples)

    def cpu(self, part: str) -> float:
        return statistics.median(float(getattr(s.cpu, part)) for s in self.samples)

    def per_op(self, part: str) -> float:
        return statistics.median(s.cpu_ms_per_op(part) for s in self.samples)

    def backends(self, top: int = 6) -> str:
        seen: Counter[str] = Counter()
        for sample in self.samples:
            seen.update(sample.backends)
        total = sum(seen.values())
        if not total:
            return "(no backend inside a transaction was sampled)"
        shown = [f"{label} {count / total:.0%}" for label, count in seen.most_common(top)]
        rest = total - sum(count for _, count in seen.most_common(top))
        return ", ".join(shown + ([f"other {rest / total:.0%}"] if rest else []))


def backends_table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | clients | backends inside a transaction, sampled every 20 ms "
        "(statement [wait event]) |",
        "|---|---:|---|",
    ]
    lines += [
        f"| ({row.scenario.key}) {row.scenario.title} | {row.clients} | {row.backends()} |"
        for row in rows
    ]
    return "\n".join(lines)


def results_table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | clients | postings/s | ops/s | p50 ms | p99 ms | ops/s per run "
        "| CPU ms/op: bench / postgres | CPU cores: bench / postgres / other | errors |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        runs = ", ".join(f"{s.ops_per_second:.0f}" for s in row.samples)
        lines.append(
            f"| ({row.scenario.key}) {row.scenario.title} | {row.clients} "
            f"| {row.ops * POSTINGS_PER_SETTLEMENT:,.0f} | {row.ops:,.0f} "
            f"| {row.median('p50_ms'):.2f} | {row.median('p99_ms'):.2f} | {runs} "
            f"| {row.per_op('bench'):.2f} / {row.per_op('postgres'):.2f} "
            f"| {row.cpu('bench'):.2f} / {row.cpu('postgres'):.2f} / {row.cpu('other'):.2f} "
            f"| {sum(s.errors for s in row.samples)} |"
        )
    return "\n".join(lines)


def ratio_table(
    rows: Sequence[Row], levels: Sequence[int], *, undisturbed: bool = False
) -> tuple[str, bool]:
    by_key = {
        (r.scenario.key, r.clients): r.undisturbed_ops if undisturbed else r.ops for r in rows
    }

    def verdict(value: float, target: float) -> str:
        if math.isnan(value):
            return f">= {target} n/a"
        return f">= {target} {'PASS' if value >= target else 'MISS'}"

    lines = [
        "| clients | (b)/(a) service vs baseline | target | (b)/(c) hot vs no shared | target |",
        "|---:|---:|---|---:|---|",
    ]
    met = True
    for clients in levels:
        a, b, c = (by_key.get((k, clients), math.nan) for k in "abc")
        b_a, b_c = b / a if a else math.nan, b / c if c else math.nan
        met &= b_a >= TARGET_SERVICE_VS_BASELINE
        if clients == TARGET_UNSHARED_AT_CLIENTS:
            b_c_target = verdict(b_c, TARGET_SERVICE_VS_UNSHARED)
            met &= b_c >= TARGET_SERVICE_VS_UNSHARED
        else:
            b_c_target = f"(set at {TARGET_UNSHARED_AT_CLIENTS} clients)"
        lines.append(
            f"| {clients} | {b_a:.2f} | {verdict(b_a, TARGET_SERVICE_VS_BASELINE)} "
            f"| {b_c:.2f} | {b_c_target} |"
        )
    return "\n".join(lines), met


def run_command(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, check=True, timeout=10, cwd=ROOT
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


async def machine_info(control: Any) -> list[str]:
    settings = {}
    for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections"):
        settings[name] = str(await control.fetchval(f"SHOW {name}"))
    dirty = run_command(["git", "status", "--porcelain", "--", "src", "alembic"])
    commit = run_command(["git", "rev-parse", "--short", "HEAD"])
    return [
        f"- CPU: {run_command(['nproc'])} cores (nproc), {cpu_model()}",
        f"- Python {platform.python_version()} ({sys.implementation.name}), "
        f"SQLAlchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')}",
        f"- {await control.fetchval('SELECT version()')}",
        "- PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        f"- Code: git {commit}"
        + (" with uncommitted changes in src/ or alembic/" if dirty else ""),
        f"- Run at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]


# --- main -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    seconds: float
    warmup: float
    repeats: int
    levels: tuple[int, ...]
    users: int
    database: str
    results: Path | None
    wait_quiet: float
    command: str


def parse_args(argv: Sequence[str], prog: str) -> Options:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="timed seconds per measurement (default 5)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: 1 s per measurement; prints only, unless --results is given",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement")
    parser.add_argument(
        "--clients",
        default="1,8,32",
        help="comma-separated concurrency levels (default 1,8,32)",
    )
    parser.add_argument("--users", type=int, default=2_000, help="seeded users (default 2000)")
    parser.add_argument(
        "--database",
        default="payments_bench",
        help="database to DROP and recreate (default payments_bench); the server comes from "
        "BENCH_DATABASE_URL, else like the test suite's (TEST_DATABASE_URL, "
        "127.0.0.1:5432, or an embedded pgserver)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"markdown report to overwrite (default {DEFAULT_RESULTS.relative_to(ROOT)}; "
        "none with --quick)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on a shared machine: before each measurement wait up to SECONDS for other "
        f"work to stop, and re-measure (up to {RETRIES_WHEN_DISTURBED} times) a measurement "
        "it disturbed (default 0: off)",
    )
    args = parser.parse_args(list(argv))
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    levels = tuple(sorted({int(c) for c in args.clients.split(",") if c.strip()}))
    if seconds <= 0 or args.repeats < 1 or not levels or min(levels) < 1:
        parser.error("--seconds, --repeats and --clients must be positive")
    if args.users < 3 * max(levels):
        parser.error("--users must be at least 3 x the largest client count")
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return Options(
        seconds=seconds,
        warmup=min(1.0, seconds / 5),
        repeats=args.repeats,
        levels=levels,
        users=args.users,
        database=args.database,
        results=args.results or (None if args.quick else DEFAULT_RESULTS),
        wait_quiet=max(0.0, args.wait_quiet),
        command=" ".join([str(shown), "-m", prog, *argv]),
    )


async def bench(options: Options, url: str) -> int:
    started = time.perf_counter()
    biggest = max(options.levels)
    control = await asyncpg.connect(asyncpg_dsn(url))
    settings = Settings(
        database_url=SecretStr(to_asyncpg_url(url)),
        # Exactly one connection per client: priming below then warms every one of them.
        db_pool_size=biggest,
        db_max_overflow=0,
    )
    engine = create_engine(to_asyncpg_url(url), settings)
    sessionmaker = create_sessionmaker(engine)
    pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=biggest,
        max_size=biggest,
        server_settings={
            "application_name": "payments-bench-baseline",
            "statement_timeout": str(settings.db_statement_timeout_ms),
        },
    )
    try:
        users, seeded = await seed(control, sessionmaker, options.users)
        await warm_engine(engine, biggest)
        print(
            f"seeded {len(users)} users ({seeded} topups) in {time.perf_counter() - started:.1f} s"
        )
        scenarios: list[Scenario] = [
            Baseline(pool),
            Service(sessionmaker, fee_to_platform=True),
            Service(sessionmaker, fee_to_platform=False),
        ]
        samples: dict[tuple[str, int], list[Sample]] = defaultdict(list)
        totals, sequence = Totals(), Sequencer()
        # Every pooled connection prepares the statements (and asyncpg introspects their
        # array types) once: done here, untimed, by every scenario at full concurrency
        # (SQLAlchemy's pool hands its connections out in turn, asyncpg's pool gives one to
        # each client).
        for scenario in scenarios:
            await measure(
                scenario,
                biggest,
                0,
                users,
                control=control,
                warmup=0.0,
                seconds=PRIME_SECONDS,
                sequence=sequence,
                totals=totals,
            )
        print(f"primed every pooled connection with {totals.settlements} settlements")
        count = options.repeats * len(options.levels) * len(scenarios)
        done = 0
        for repeat in range(1, options.repeats + 1):
            for clients in options.levels:
                for scenario in scenarios:
                    done += 1
                    for attempt in range(1 + (RETRIES_WHEN_DISTURBED if options.wait_quiet else 0)):
                        await settle_down(control)
                        if options.wait_quiet:
                            await wait_for_quiet(options.wait_quiet)
                        sample = await measure(
                            scenario,
                            clients,
                            repeat,
                            users,
                            control=control,
                            warmup=options.warmup,
                            seconds=options.seconds,
                            sequence=sequence,
                            totals=totals,
                        )
                        print(
                            f"[{done:>2}/{count}] run {repeat} clients {clients:>2} "
                            f"({scenario.key}) {scenario.title:<31} "
                            f"{sample.ops_per_second:>7.0f} ops/s"
                            f"  p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms"
                            f"  cpu {sample.cpu.bench:.2f}/{sample.cpu.postgres:.2f}"
                            f"/{sample.cpu.other:.2f}"
                            + (f"  {sample.errors} errors" if sample.errors else "")
                            + (" (re-measured)" if attempt else ""),
                            flush=True,
                        )
                        if not sample.cpu.other > DISTURBED_ABOVE:
                            break
                    samples[(scenario.key, clients)].append(sample)

        rows = [
            Row(scenario, clients, samples[(scenario.key, clients)])
            for clients in options.levels
            for scenario in scenarios
        ]
        table = results_table(rows)
        ratios, targets_met = ratio_table(rows, options.levels)
        noise = disturbance([s for row in rows for s in row.samples])
        if noise:
            clean, _ = ratio_table(rows, options.levels, undisturbed=True)
            noise += (
                "\n\nThe same ratios from the undisturbed runs only (nan: every run of a "
                f"scenario was disturbed):\n\n{clean}"
            )
        where = backends_table(rows)
        print(f"\n{table}\n\n{ratios}\n" + (f"\n{noise}\n" if noise else ""))
        print(f"{where}\n\nInvariants:")
        broken = await check_invariants(control, totals.settlements + seeded, totals.to_platform)
        elapsed = time.perf_counter() - started
        if totals.failures:
            distinct = sorted(set(totals.failures))
            print(f"\n{len(totals.failures)} settlements failed, e.g.:")
            print("\n".join(f"  {failure}" for failure in distinct[:5]))
        print(
            f"\nTargets {'met' if targets_met else 'MISSED'}; "
            f"{'invariants hold' if not broken else 'INVARIANTS BROKEN: ' + ', '.join(broken)}; "
            f"{elapsed:.0f} s in all."
        )
        if options.results is not None:
            report = render_report(
                options,
                machine=await machine_info(control),
                table=table,
                ratios=ratios,
                noise=noise,
                where=where,
                invariants=await invariant_report(control, totals, seeded, broken),
                failures=totals.failures,
                elapsed=elapsed,
            )
            options.results.write_text(report)
            print(f"wrote {options.results}")
        return 1 if broken or totals.failures else 0
    finally:
        await pool.close()
        await engine.dispose()
        await control.close()


def disturbance(samples: Sequence[Sample]) -> str:
    """A warning naming the measurements that other work on the machine disturbed."""
    disturbed = [s for s in samples if s.cpu.other > DISTURBED_ABOVE]
    if not disturbed:
        return ""
    runs = ", ".join(
        f"({s.scenario}) x{s.clients} run {s.repeat}: {s.cpu.other:.2f}" for s in disturbed
    )
    return (
        f"**Warning**: {len(disturbed)} of {len(samples)} measurements ran while other work "
        f"kept more than {DISTURBED_ABOVE} CPU cores busy; their figures are low and noisy "
        f"(cores used by others: {runs}). Re-run on a quiet machine."
    )


async def invariant_report(control: Any, totals: Totals, seeded: int, broken: list[str]) -> str:
    transactions = int(await control.fetchval("SELECT count(*) FROM ledger_transactions"))
    postings = int(await control.fetchval("SELECT count(*) FROM ledger_postings"))
    status = "all hold" if not broken else "BROKEN: " + ", ".join(broken)
    return (
        f"Checked with SQL after the run: {status}. Balanced postings per transaction and "
        "currency; cached balance = sum of postings for every account; no user available "
        f"or escrow below zero; {transactions} transactions = {totals.settlements} "
        f"successful settlements + {seeded} seeding topups ({postings} postings); "
        f"platform_fees = {FEE} x {totals.to_platform} settlements of (a) and (b)."
    )


def render_report(
    options: Options,
    *,
    machine: list[str],
    table: str,
    ratios: str,
    noise: str,
    where: str,
    invariants: str,
    failures: list[str],
    elapsed: float,
) -> str:
    failed = (
        f"\n\n**{len(failures)} settlements failed**, e.g. `{sorted(set(failures))[0]}`."
        if failures
        else ""
    )
    return f"""# Ledger benchmark results

Generated by `bench/ledger.py`; overwritten on every full run. Command:

```
{options.command}
```

One *settlement* is a ledger transaction of {POSTINGS_PER_SETTLEMENT} postings: payer
escrow -{PAYER_DEBIT}, payee available +{PAYEE_CREDIT}, fee +{FEE}. Concurrent clients
always settle between distinct users.

- **(a) baseline**: raw asyncpg (no SQLAlchemy), one connection held per client, the
  service's own statements (compiled from `payments_api.ledger.statements`) in one
  transaction, the two round trips `post` makes when every account exists: insert the
  transaction, look its accounts up and lock the single-shard balances; then pick a
  free `platform_fees` shard, apply the deltas and insert the postings.
- **(b) service**: `LedgerService(session).post(...)` in its own
  `sessionmaker.begin()` (engine from `payments_api.db.create_engine`); every fee goes
  to the platform's hot, sharded `platform_fees` account.
- **(c) no shared account**: as (b), but the fee goes to a third user's `available`,
  so concurrent settlements share no account.

Method: {options.users} seeded users on a freshly migrated database; before each
measurement `VACUUM ANALYZE` of the ledger tables and `CHECKPOINT`; {options.warmup:g} s
warm-up then {options.seconds:g} s timed per measurement; scenarios interleaved
(a, b, c, a, b, c, ...), {options.repeats} runs each, medians reported (p50/p99 are the
medians of the runs' percentiles). postings/s = {POSTINGS_PER_SETTLEMENT} x ops/s. Every
pooled connection runs settlements untimed first (prepared statements, asyncpg's type
introspection). "CPU ms/op" is the CPU time one settlement cost the benchmark process
(the client side) and PostgreSQL. "CPU cores" (medians) is what was kept busy during
the timed window by the benchmark process (one Python thread runs every client: near 1.0
means the client side is the limit), by the PostgreSQL backends of the benchmark's
database, and by everything else (WAL writer, checkpointer, and any other work on the
machine, which disturbs the figures; runs with more than {DISTURBED_ABOVE} such cores are flagged).
Whole run: {elapsed:.0f} s.

## Machine

{chr(10).join(machine)}

## Results

{table}

## Ratios (throughput)

{ratios}
{chr(10) + noise + chr(10) if noise else ""}
## Where the database's time goes

{where}

"client (idle in transaction)" is a backend waiting, mid-transaction, for the client's
next statement: client-side time (Python, the event loop, the network round trip).

## Invariants

{invariants}{failed}
"""


def main(argv: Sequence[str] | None = None, prog: str = "bench.ledger") -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv, prog)
    admin = os.environ.get("BENCH_DATABASE_URL") or admin_url()
    url = create_database(admin, options.database)
    print(
        f"database {options.database} migrated; {options.repeats} x {len(options.levels)} "
        f"levels x 3 scenarios of {options.warmup:g}+{options.seconds:g} s",
        flush=True,
    )
    return asyncio.run(bench(options, url))


if __name__ == "__main__":
    sys.exit(main())
