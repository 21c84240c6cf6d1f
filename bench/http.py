"""HTTP benchmark: how close the service runs to this machine's limit.

Run ``.venv/bin/python -m bench.http`` (``--quick`` for a short smoke run, ``--only`` for
some scenarios, ``--help`` for the rest). It:

1. drops and recreates a database (``payments_bench_http``), migrates it like
   ``payments-api serve --migrate`` and seeds every scenario's data in SQL;
2. starts the service with ``payments-api serve`` (uvicorn, ``--workers`` processes),
   Stripe pointed at a local port that only counts connection attempts (no scenario
   may call Stripe: the run fails if anything connects), the rate limiter at a limit
   no scenario reaches;
3. records the SQL of every request kind in-process (``bench/record.py``) and starts the
   baseline server (``bench/baseline_app.py``: B = a constant route, C = minimal routes
   running the recorded SQL on an asyncpg pool) with the same uvicorn settings;
4. drives load from a second process (``bench/load.py``) on loopback: every scenario and
   baseline in turn, interleaved, repeated, each after ``VACUUM ANALYZE`` and
   ``CHECKPOINT``; baseline A (the recorded SQL on raw asyncpg, no HTTP) runs in the
   load process;
5. checks money afterwards: the ledger's invariants, and exactly-once for every flow
   (escrows, webhook credits, Idempotency-Key replays) against what the load process
   saw acknowledged; a fast run that broke money exits 1.

Scenarios: (1) balance of random users out of 100,000; (2) earnings list and summary of a
payee with 1,000,000 entries, page 1 and page 10,000; (3) escrow settlement (create,
accept, complete) with 8 and 32 concurrent customers, every fee to the platform;
(4) signed ``payment_intent.succeeded`` deliveries for distinct pending orders;
(5) the same with 30% redelivered and 10% concurrently duplicated; (6) Idempotency-Key
replays of completed requests (and 32 concurrent requests sharing one key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr
from tests.db_setup import admin_url

from bench import workload as w
from bench.ledger import (
    DISTURBED_ABOVE,
    INVARIANTS,
    _machine_seconds,
    _process_seconds,
    cpu_model,
    run_command,
    wait_for_quiet,
)
from bench.record import describe, record_all
from bench.replay import save
from bench.seed import SEEDED_TABLES, create_database, seed
from payments_api.db import asyncpg_dsn
from payments_api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- http-bench:start -->"
SECTION_END = "<!-- http-bench:end -->"

SCENARIOS = ("balance", "earnings", "settlement", "webhook", "webhook-dup", "replay")
TITLES = {
    "constant": "B: constant route (HTTP ceiling)",
    "balance": "(1) balance read",
    "earnings-first": "(2) earnings, page 1 + summary",
    "earnings-deep": "(2) earnings, deep page + summary",
    "settlement": "(3) escrow settlement (3 requests)",
    "webhook": "(4) webhook ingest, distinct events",
    "webhook-dup": "(5) webhook ingest, 30%+10% duplicates",
    "replay": "(6) Idempotency-Key replay",
}
TARGETS = {
    "service": "service",
    "a": "A: raw asyncpg",
    "a0": "A0: minimal hand-written SQL",
    "b": "B",
    "c": "C: FastAPI + asyncpg",
}


@dataclass(frozen=True, slots=True)
class Measurement:
    scenario: str
    target: str
    clients: int
    load_percent: int = 0
    """Open loop: arrivals at this percentage of the closed-loop capacity measured in
    the same run (0: closed loop, each client sends its next operation when the last
    one finished)."""

    @property
    def label(self) -> str:
        suffix = f"/open{self.load_percent}%" if self.load_percent else ""
        return f"{self.scenario}/{self.target}/{self.clients}{suffix}"


@dataclass(frozen=True, slots=True)
class Cpu:
    load: float
    server: float
    postgres: float
    machine: float
    mine: float
    """This orchestrating process."""
    irq: float
    """Interrupt and softirq time (mostly the loopback network), not any process's."""

    @property
    def other(self) -> float:
        return self.machine - self.load - self.server - self.postgres - self.mine - self.irq


@dataclass(slots=True)
class Sample:
    measurement: Measurement
    repeat: int
    result: dict[str, Any]
    cpu: Cpu

    def value(self, key: str) -> float:
        return float(self.result[key])


@dataclass(slots=True)
class Row:
    measurement: Measurement
    samples: list[Sample] = field(default_factory=list)

    def median(self, key: str) -> float:
        values = [s.value(key) for s in self.samples]
        return statistics.median(values) if values else math.nan

    def cpu(self, part: str) -> float:
        values = [float(getattr(s.cpu, part)) for s in self.samples]
        return statistics.median(values) if values else math.nan

    @property
    def errors(self) -> int:
        return sum(int(s.result["errors"]) for s in self.samples)


# --- options ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    seconds: float
    warmup: float
    repeats: int
    workers: int
    clients: int
    settlement_levels: tuple[int, ...]
    only: tuple[str, ...]
    sizes: w.Sizes
    database: str
    results: Path | None
    wait_quiet: float
    profile: bool
    quick: bool
    service_env: tuple[tuple[str, str], ...]
    json: Path | None
    command: str


def parse_args(argv: Sequence[str], prog: str) -> Options:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small data, ~1 s per "
        "measurement, 1 run; prints only, unless --results is given",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios: " + ", ".join(SCENARIOS) + " (baseline B always runs)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="timed seconds per measurement (default 3; --quick 0.6)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="untimed seconds before each (default 0.5; --quick 0.2)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of every measurement, interleaved (default 3; --quick 1)",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="concurrent clients of every scenario but (3) (default 8)",
    )
    parser.add_argument(
        "--settlement-clients",
        default="8,32",
        help="concurrency levels of (3) (default 8,32; A and C run at the highest)",
    )
    parser.add_argument(
        "--database",
        default="payments_bench_http",
        help="database to DROP and recreate (server: BENCH_DATABASE_URL, "
        "else the test suite's: TEST_DATABASE_URL or 127.0.0.1:5432)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="markdown file whose HTTP section is replaced (default "
        "bench/RESULTS.md; none with --quick)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement wait up to SECONDS for other work on "
        "the machine to stop (default 0: off)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the service (repeatable), to measure a configuration "
        "change, e.g. PAYMENTS_DB_POOL_SIZE=20",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the results as JSON here (for tests and tools)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample the service with py-spy during an extra, unreported run "
        "of (1) and of (3) (default: on for full runs when py-spy is "
        "installed)",
    )
    args = parser.parse_args(list(argv))
    only = tuple(s.strip() for s in args.only.split(",") if s.strip()) or SCENARIOS
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    levels = tuple(sorted({int(c) for c in args.settlement_clients.split(",") if c.strip()}))
    quick = bool(args.quick)
    sizes = w.QUICK if quick else w.FULL
    if max(levels) > sizes.escrow_clients:
        parser.error(f"at most {sizes.escrow_clients} settlement clients")
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return Options(
        seconds=args.seconds if args.seconds is not None else (0.6 if quick else 3.0),
        warmup=args.warmup if args.warmup is not None else (0.2 if quick else 0.5),
        repeats=args.repeats if args.repeats is not None else (1 if quick else 3),
        workers=args.workers,
        clients=args.clients,
        settlement_levels=levels,
        only=only,
        sizes=sizes,
        database=args.database,
        results=args.results or (None if quick else DEFAULT_RESULTS),
        wait_quiet=max(0.0, args.wait_quiet),
        profile=args.profile if args.profile is not None else (not quick and bool(py_spy())),
        quick=quick,
        service_env=tuple(_assignment(parser, item) for item in args.service_env),
        json=args.json,
        command=" ".join([str(shown), "-m", prog, *argv]),
    )


def _assignment(parser: argparse.ArgumentParser, item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.startswith("PAYMENTS_"):
        parser.error(f"--service-env takes PAYMENTS_NAME=VALUE, not {item!r}")
    return name, value


OPEN_LOOP_LOADS = (50, 80)
OPEN_LOOP_CLIENTS = 32
"""Connections that serve the open-loop arrivals (each the first free one)."""


def open_plan(options: Options) -> list[Measurement]:
    """One round of open-loop measurements, run after every closed-loop round (their
    rates come from the closed-loop capacity just measured)."""
    out: list[Measurement] = []
    for scenario in ("settlement", "balance"):
        if scenario in options.only:
            out += [
                Measurement(scenario, "service", OPEN_LOOP_CLIENTS, load)
                for load in OPEN_LOOP_LOADS
            ]
    return out


def capacity(rows: Sequence[Row], scenario: str) -> float:
    """The service's closed-loop throughput for ``scenario``: the best median of its
    client levels."""
    medians = [
        row.median("ops")
        for row in rows
        if row.measurement.scenario == scenario
        and row.measurement.target == "service"
        and not row.measurement.load_percent
    ]
    return max(medians) if medians else math.nan


def plan(options: Options) -> list[Measurement]:
    """One round of measurements, in the order they run (interleaved per round)."""
    n = options.clients
    out = [Measurement("constant", "b", n)]
    if "balance" in options.only:
        out += [Measurement("balance", t, n) for t in ("service", "a", "c")]
    if "earnings" in options.only:
        for scenario in ("earnings-first", "earnings-deep"):
            out += [Measurement(scenario, t, n) for t in ("service", "a", "c")]
    if "settlement" in options.only:
        top = max(options.settlement_levels)
        out += [Measurement("settlement", "service", c) for c in options.settlement_levels]
        out += [Measurement("settlement", t, top) for t in ("a", "a0", "c")]
    if "webhook" in options.only:
        out += [Measurement("webhook", t, n) for t in ("service", "a", "c")]
    if "webhook-dup" in options.only:
        out += [Measurement("webhook-dup", "service", n)]
    if "replay" in options.only:
        out += [Measurement("replay", t, n) for t in ("service", "a", "c")]
    return out


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return (
        os.environ.get("BENCH_PY_SPY")
        or (str(beside) if beside.exists() else None)
        or shutil.which("py-spy")
    )


# --- processes ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StripeSentinel:
    """The address Stripe is pointed at: accepts and counts connections, answers none."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def service_env(url: str, sentinel_port: int, workers: int) -> dict[str, str]:
    return {
        "PAYMENTS_DATABASE_URL": url,
        "PAYMENTS_ENVIRONMENT": "development",
        "PAYMENTS_WORKERS": str(workers),
        "PAYMENTS_STRIPE_SECRET_KEY": w.STRIPE_TEST_KEY,
        "PAYMENTS_STRIPE_API_BASE": f"http://127.0.0.1:{sentinel_port}",
        "PAYMENTS_STRIPE_MAX_NETWORK_RETRIES": "0",
        "PAYMENTS_STRIPE_WEBHOOK_SECRETS": w.WEBHOOK_SECRET,
        "PAYMENTS_JWT_SECRET": w.JWT_SECRET,
        # On, so its cost is measured, at limits no scenario reaches.
        "PAYMENTS_RATE_LIMIT_PER_USER": "100000000/minute",
        "PAYMENTS_RATE_LIMIT_PER_IP": "100000000/minute",
    }


class Server:
    """A uvicorn server this benchmark started (in its own process group)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, log: Path
    ) -> None:
        self.name, self.port, self.log = name, port, log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
                try:
                    response = await client.get(f"http://127.0.0.1:{self.port}/healthz")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start in {within:.0f} s")

    def pids(self) -> list[int]:
        """The server process and all its descendants (the uvicorn workers)."""
        children: dict[int, list[int]] = defaultdict(list)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children[ppid].append(int(entry.name))
        out, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    def workers(self) -> list[int]:
        """The uvicorn worker processes (or the server itself with one worker)."""
        spawned = []
        for pid in self.pids()[1:]:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    spawned.append(pid)
            except OSError:
                continue
        return spawned or [self.process.pid]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.handle.close()


class LoadProcess:
    """The load generator in its own process; one job at a time over pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, config: dict[str, Any]) -> LoadProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.load",
            json.dumps(config),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        load = cls(process)
        await load.expect("ready", within=120)
        return load

    async def expect(self, event: str, within: float = 600) -> dict[str, Any]:
        assert self.process.stdout is not None  # noqa: S101
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            raise RuntimeError("the load process exited")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "failed":
            raise RuntimeError(f"load process: {message['error']}\n{message.get('trace', '')}")
        if message.get("event") != event:
            raise RuntimeError(f"load process said {message}, expected {event}")
        return message

    def send(self, job: dict[str, Any]) -> None:
        assert self.process.stdin is not None  # noqa: S101
        self.process.stdin.write((json.dumps(job) + "\n").encode())

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# --- measuring ----------------------------------------------------------------------------
def _times(pids: Sequence[int]) -> dict[int, float]:
    return {pid: _process_seconds(pid) for pid in pids}


def _irq_seconds() -> float:
    try:
        ticks = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        return (int(ticks[5]) + int(ticks[6])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes readable at both (a
    connection closed meanwhile is left out rather than counted negative)."""
    return sum(
        after[pid] - before[pid]
        for pid in before
        if not math.isnan(before[pid]) and not math.isnan(after.get(pid, math.nan))
    )


async def backend_pids(control: Any) -> list[int]:
    rows = await control.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
        " AND backend_type IN ('client backend', 'parallel worker')"
    )
    return [int(r["pid"]) for r in rows]


BACKEND_POLL = 0.05


class Backends:
    """CPU of the database's backends over a window, polled every ``BACKEND_POLL`` s, so
    that processes starting inside it are counted too: new connections (their start-up
    is a cost of connection churn) and parallel query workers. A process that ends is
    counted up to its last poll."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    async def poll(self, *, initial: bool = False) -> None:
        for pid in await backend_pids(self.control):
            seconds = _process_seconds(pid)
            if math.isnan(seconds):
                continue
            # A process first seen after the start began inside the window.
            self.first.setdefault(pid, seconds if initial else 0.0)
            self.last[pid] = seconds

    async def follow(self, end: float) -> None:
        while time.monotonic() < end - BACKEND_POLL:
            await asyncio.sleep(BACKEND_POLL)
            await self.poll()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.first)


async def settle_down(control: Any) -> None:
    await control.execute(f"VACUUM ANALYZE {', '.join(SEEDED_TABLES)}")
    await control.execute("CHECKPOINT")


@dataclass
class Run:
    options: Options
    control: Any
    load: LoadProcess
    service: Server
    baseline: Server
    next_order: int = 3
    """Orders 1 and 2 were used by the recording."""
    extra_flows: int = 0
    """Settlements of the (unreported) profiling run."""

    async def measure(self, m: Measurement, repeat: int, rate: float = 0.0) -> Sample:
        job = {
            "scenario": m.scenario,
            "target": m.target,
            "clients": m.clients,
            "rate": rate,
            "warmup": self.options.warmup,
            "seconds": self.options.seconds,
            "orders_from": self.next_order - 1,
            "workers": self.server_of(m.target).workers() if m.target not in ("a", "a0") else [],
        }
        sessions = await self.sessions()
        self.load.send(job)
        window = await self.load.expect("window", within=120)
        cpu = await self.cpu_in(window["start"], window["end"], m.target)
        result = await self.load.expect("result", within=120 + self.options.seconds * 4)
        result["connections"] = await self.sessions() - sessions
        if m.scenario.startswith("webhook"):
            self.next_order = int(result["orders"][1]) + 1
            if self.next_order > self.options.sizes.orders:
                raise RuntimeError("the seeded pending orders ran out; seed more")
        return Sample(m, repeat, result, cpu)

    def server_of(self, target: str) -> Server:
        return self.service if target == "service" else self.baseline

    async def sessions(self) -> int:
        """Connections ever opened to the benchmark's database (a closed one is counted
        at once; a new one that stays open within about a second)."""
        return int(
            await self.control.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
        )

    async def cpu_in(self, start: float, end: float, target: str) -> Cpu:
        server = {"service": self.service, "b": self.baseline, "c": self.baseline}.get(target)
        server_pids = server.pids() if server else []
        load = [self.load.process.pid]
        backends = Backends(self.control)
        await asyncio.sleep(max(0.0, start - time.monotonic()))

        def snapshot() -> tuple[Any, ...]:
            return (
                _times(load),
                _times(server_pids),
                _machine_seconds(),
                time.process_time(),
                _irq_seconds(),
                time.monotonic(),
            )

        before = snapshot()
        await backends.poll(initial=True)
        await backends.follow(end)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        await backends.poll()
        after = snapshot()
        elapsed = after[-1] - before[-1]
        return Cpu(
            load=_delta(before[0], after[0]) / elapsed,
            server=_delta(before[1], after[1]) / elapsed,
            postgres=backends.seconds / elapsed,
            machine=(after[2] - before[2]) / elapsed,
            mine=(after[3] - before[3]) / elapsed,
            irq=(after[4] - before[4]) / elapsed,
        )


# --- checks ---------------------------------------------------------------------------------
MONEY_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "ledger transactions = seeding + escrow steps + credited top-ups (nothing else moved)",
        """SELECT (SELECT count(*) FROM ledger_transactions)
                - {seed}
                - (SELECT coalesce(sum(CASE status WHEN 'created' THEN 1 WHEN 'accepted' THEN 2
                                                   WHEN 'completed' THEN 3 END), 0)
                   FROM escrows)
                - (SELECT count(*) FROM orders WHERE status = 'succeeded')""",
    ),
    (
        "every escrow step and every top-up was posted exactly once (cause keys)",
        """SELECT abs((SELECT count(*) FROM ledger_transactions WHERE cause_key LIKE 'escrow:%')
                    - (SELECT coalesce(sum(CASE status WHEN 'created' THEN 1
                        WHEN 'accepted' THEN 2 WHEN 'completed' THEN 3 END), 0) FROM escrows))
                + abs((SELECT count(*) FROM ledger_transactions
                       WHERE cause_key LIKE 'stripe:payment:%')
                    - (SELECT count(*) FROM orders WHERE status = 'succeeded'))""",
    ),
    (
        "platform_fees = platform fees of accepted/completed escrows + service fees of completed",
        """SELECT (SELECT coalesce(sum(b.balance), 0) FROM ledger_balances b
                   JOIN ledger_accounts a ON a.id = b.account_id
                   WHERE a.owner_user_id IS NULL AND a.kind = 'platform_fees')
                - (SELECT coalesce(sum(CASE WHEN status IN ('accepted', 'completed')
                                            THEN platform_fee_amount ELSE 0 END
                                     + CASE WHEN status = 'completed'
                                            THEN service_fee_amount ELSE 0 END), 0)
                   FROM escrows)""",
    ),
    (
        "every payee's available = the takes of their completed escrows (users off by any)",
        """SELECT count(*) FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
           WHERE a.owner_user_id LIKE 'p%' AND a.kind = 'available'
             AND b.balance <> (SELECT coalesce(sum(payee_amount), 0) FROM escrows e
                               WHERE e.payee_id = a.owner_user_id AND e.status = 'completed')""",
    ),
    (
        "every customer's available and escrow match their escrows (users off by any)",
        """SELECT count(*) FROM users u
           JOIN ledger_accounts av ON av.owner_user_id = u.id AND av.kind = 'available'
           JOIN ledger_balances bav ON bav.account_id = av.id
           JOIN ledger_accounts es ON es.owner_user_id = u.id AND es.kind = 'escrow'
           JOIN ledger_balances bes ON bes.account_id = es.id
           LEFT JOIN LATERAL (
               SELECT coalesce(sum(hold_amount), 0) AS held,
                      coalesce(sum(CASE status WHEN 'created' THEN hold_amount
                                               WHEN 'accepted' THEN price_amount
                                               ELSE 0 END), 0) AS in_escrow
               FROM escrows e WHERE e.customer_id = u.id) x ON true
           WHERE (u.id LIKE 'c%' OR u.id LIKE 'r%')
             AND (bav.balance <> {rich} - x.held OR bes.balance <> x.in_escrow)""",
    ),
    (
        "one earnings entry per completed escrow",
        """SELECT abs((SELECT count(*) FROM earnings WHERE escrow_id IS NOT NULL)
                    - (SELECT count(*) FROM escrows WHERE status = 'completed'))""",
    ),
    (
        "earnings rollups and totals = the sums and counts of their entries",
        """SELECT (SELECT count(*) FROM (
                       (SELECT payee_id, bucket_start, currency, project_id, amount, entries
                        FROM earnings_rollups
                        EXCEPT ALL
                        SELECT payee_id, date_bin(interval '15 minutes', earned_at,
                                                  TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                               currency, coalesce(project_id, ''), sum(amount), count(*)
                        FROM earnings GROUP BY 1, 2, 3, 4)
                       UNION ALL
                       (SELECT payee_id, date_bin(interval '15 minutes', earned_at,
                                                  TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                               currency, coalesce(project_id, ''), sum(amount), count(*)
                        FROM earnings GROUP BY 1, 2, 3, 4
                        EXCEPT ALL
                        SELECT payee_id, bucket_start, currency, project_id, amount, entries
                        FROM earnings_rollups)) x)
                + (SELECT count(*) FROM (
                       (SELECT payee_id, currency, project_id, amount, entries
                        FROM earnings_totals
                        EXCEPT ALL
                        SELECT payee_id, currency, coalesce(project_id, ''), sum(amount),
                               count(*)
                        FROM earnings GROUP BY 1, 2, 3)
                       UNION ALL
                       (SELECT payee_id, currency, coalesce(project_id, ''), sum(amount),
                               count(*)
                        FROM earnings GROUP BY 1, 2, 3
                        EXCEPT ALL
                        SELECT payee_id, currency, project_id, amount, entries
                        FROM earnings_totals)) y)""",
    ),
    (
        "every top-up user's available = their succeeded orders (no double credit)",
        """SELECT count(*) FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
           WHERE a.owner_user_id LIKE 'w%' AND a.kind = 'available'
             AND b.balance <> (SELECT coalesce(sum(amount), 0) FROM orders o
                               WHERE o.user_id = a.owner_user_id AND o.status = 'succeeded')""",
    ),
    (
        "every stored event was applied, once",
        """SELECT abs((SELECT count(*) FROM webhook_events WHERE status = 'processed')
                    - (SELECT count(*) FROM orders WHERE status = 'succeeded'))
                + (SELECT count(*) FROM webhook_events WHERE status <> 'processed')""",
    ),
)


async def check_money(
    control: Any,
    facts: dict[str, Any],
    samples: Sequence[Sample],
    setup: dict[str, Any],
    sentinel: StripeSentinel,
    deadlocks: int,
    service_log: Path,
) -> tuple[list[str], list[str]]:
    """(report lines, broken rules)."""
    lines: list[str] = []
    broken: list[str] = []

    def verdict(ok: bool, text: str) -> None:
        lines.append(f"- {'ok' if ok else 'BROKEN'}: {text}")
        if not ok:
            broken.append(text)

    for rule, sql in INVARIANTS:
        offenders = int(await control.fetchval(sql))
        verdict(offenders == 0, f"{rule} ({offenders} offenders)")
    for rule, sql in MONEY_CHECKS:
        query = sql.format(seed=int(facts["seed_transactions"]), rich=int(w.SEED_RICH))
        offenders = int(await control.fetchval(query))
        verdict(offenders == 0, f"{rule} ({offenders} off)")

    acked = sorted({g for s in samples for g in s.result.get("acked", [])})
    if acked:
        pis = [w.order_pi(g) for g in acked]
        missing = int(
            await control.fetchval(
                "SELECT count(*) FROM orders WHERE stripe_payment_intent_id = ANY($1::text[])"
                " AND status <> 'succeeded'",
                pis,
            )
        )
        verdict(
            missing == 0,
            f"every acknowledged delivery's order is credited ({len(acked)} events, {missing} not)",
        )
    succeeded = int(
        await control.fetchval("SELECT count(*) FROM orders WHERE status = 'succeeded'")
    )
    deliveries = sum(
        int(s.result.get("requests", 0))
        for s in samples
        if s.measurement.scenario.startswith("webhook") and s.measurement.target != "a"
    )
    lines.append(
        f"- info: {succeeded} top-ups credited by {deliveries} HTTP deliveries and the SQL baseline"
    )
    flows = sum(int(s.result.get("completed_flows", 0)) for s in samples) + 2  # + recording
    completed = int(
        await control.fetchval("SELECT count(*) FROM escrows WHERE status = 'completed'")
    )
    verdict(
        completed == flows,
        f"completed escrows = settlements the load process saw complete ({completed} vs {flows})",
    )
    if setup:
        replays = int(
            await control.fetchval("SELECT count(*) FROM escrows WHERE customer_id LIKE 'r%'")
        )
        expected = int(setup["replay_keys"]) + 2  # + the shared key + the recording's
        verdict(
            replays == expected,
            f"Idempotency-Key replays created nothing ({replays} "
            f"escrows by replayers, expected {expected})",
        )
        shared = int(
            await control.fetchval(
                "SELECT count(*) FROM escrows WHERE customer_id = $1 AND creation_key = $2",
                setup["shared_user"],
                setup["shared_key"],
            )
        )
        outcomes = ", ".join(f"{n} x {k}" for k, n in sorted(setup["shared_outcomes"].items()))
        verdict(
            shared == 1,
            f"32 concurrent requests sharing one key executed once "
            f"({shared} escrow; responses: {outcomes})",
        )
    verdict(
        sentinel.connections == 0,
        f"no scenario called Stripe ({sentinel.connections} "
        "connection attempts to the address Stripe was pointed at)",
    )
    verdict(deadlocks == 0, f"no deadlock ({deadlocks} in pg_stat_database)")
    errors = await asyncio.to_thread(_logged_errors, service_log)
    verdict(errors == 0, f"no error logged by the service ({errors} lines)")
    return lines, broken


def _logged_errors(log: Path) -> int:
    """Lines the service logged at level error or above."""
    if not log.exists():
        return 0
    with log.open("rb") as handle:
        return sum(
            1 for line in handle if b'"level": "error"' in line or b'"level": "critical"' in line
        )


# --- reporting ------------------------------------------------------------------------------
def fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def results_table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | target | clients | ops/s | p50 ms | p99 ms | ops/s per run "
        "| CPU cores: load / server / postgres / irq / other | DB connections opened | errors |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for row in rows:
        m = row.measurement
        runs = ", ".join(fmt(s.value("ops")) for s in row.samples)
        lines.append(
            f"| {TITLES[m.scenario]} | {TARGETS[m.target]} | {m.clients} "
            f"| {fmt(row.median('ops'))} "
            f"| {fmt(row.median('p50_ms'), 2)} | {fmt(row.median('p99_ms'), 2)} | {runs} "
            f"| {row.cpu('load'):.2f} / {row.cpu('server'):.2f} / {row.cpu('postgres'):.2f} "
            f"/ {row.cpu('irq'):.2f} / {row.cpu('other'):.2f} "
            f"| {fmt(row.median('connections'))} | {row.errors} |"
        )
    return "\n".join(lines)


def open_loop_table(rows: Sequence[Row], closed: Sequence[Row]) -> str:
    if not rows:
        return "(no open-loop measurement: it needs the settlement or balance scenario)"
    lines = [
        "| scenario | arrivals: % of closed-loop capacity | offered ops/s | completed ops/s "
        "| p50 ms | p99 ms | p99.9 ms | still queued when arrivals ended | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        m = row.measurement
        backlog = ", ".join(str(int(s.value("backlog"))) for s in row.samples)
        lines.append(
            f"| {TITLES[m.scenario]} | {m.load_percent}% of {fmt(capacity(closed, m.scenario))} "
            f"| {fmt(row.median('offered_ops'))} | {fmt(row.median('ops'))} "
            f"| {fmt(row.median('p50_ms'), 2)} | {fmt(row.median('p99_ms'), 2)} "
            f"| {fmt(row.median('p999_ms'), 2)} | {backlog} | {row.errors} |"
        )
    return "\n".join(lines)


def find(rows: Sequence[Row], scenario: str, target: str, clients: int | None = None) -> Row | None:
    for row in rows:
        m = row.measurement
        if (
            m.scenario == scenario
            and m.target == target
            and (clients is None or m.clients == clients)
        ):
            return row
    return None


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def baselines_table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | clients | service ops/s | / A0 (minimal SQL) | / A (raw SQL) "
        "| / B (HTTP ceiling) | / C (FastAPI + asyncpg) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    b = find(rows, "constant", "b")
    for row in rows:
        m = row.measurement
        if m.target != "service":
            continue
        a = find(rows, m.scenario, "a")
        a0 = find(rows, m.scenario, "a0")
        c = find(rows, m.scenario, "c")
        ops = row.median("ops")
        lines.append(
            f"| {TITLES[m.scenario]} | {m.clients} | {fmt(ops)} "
            f"| {fmt(ratio(ops, a0.median('ops')) if a0 else math.nan, 2)} "
            f"| {fmt(ratio(ops, a.median('ops')) if a else math.nan, 2)} "
            f"| {fmt(ratio(ops, b.median('ops')) if b else math.nan, 2)} "
            f"| {fmt(ratio(ops, c.median('ops')) if c else math.nan, 2)} |"
        )
    return "\n".join(lines)


def targets_table(rows: Sequence[Row], options: Options, money_ok: bool) -> tuple[str, bool]:
    lines = ["| target | measured | verdict |", "|---|---:|---|"]
    met = True

    def check(name: str, value: float, ok: bool | None, shown: str | None = None) -> None:
        nonlocal met
        if ok is None or math.isnan(value):
            verdict = "n/a"
        else:
            verdict = "PASS" if ok else "MISS"
            met &= ok
        lines.append(f"| {name} | {shown or fmt(value, 2)} | {verdict} |")

    def svc(scenario: str, clients: int | None = None) -> Row | None:
        return find(rows, scenario, "service", clients)

    balance, balance_c = svc("balance"), find(rows, "balance", "c")
    if balance:
        r = ratio(balance.median("ops"), balance_c.median("ops")) if balance_c else math.nan
        check("(1) balance read >= 0.7 x baseline C", r, r >= 0.7)
        p99 = balance.median("p99_ms")
        check("(1) balance read p99 <= 25 ms", p99, p99 <= 25, f"{p99:.1f} ms")
    first, deep = svc("earnings-first"), svc("earnings-deep")
    if first and deep:
        p99 = first.median("p99_ms")
        check(
            "(2) earnings summary (in every list response) p99 <= 50 ms",
            p99,
            p99 <= 50,
            f"{p99:.1f} ms",
        )
        r = ratio(deep.median("p50_ms"), first.median("p50_ms"))
        check(f"(2) page {options.sizes.deep_page:,} <= 1.5 x page 1 (p50)", r, r <= 1.5)
    top, low = max(options.settlement_levels), min(options.settlement_levels)
    s_top, s_low, s_a = (
        svc("settlement", top),
        svc("settlement", low),
        find(rows, "settlement", "a"),
    )
    if s_top:
        r = ratio(s_top.median("ops"), s_a.median("ops")) if s_a else math.nan
        check(f"(3) settlements/s >= 0.4 x baseline A ({top} clients)", r, r >= 0.4)
        if s_low and low != top:
            r = ratio(s_top.median("ops"), s_low.median("ops"))
            check(f"(3) throughput at {top} clients >= 0.9 x at {low}", r, r >= 0.9)
        p99 = s_top.median("request_p99_ms")
        check(f"(3) request p99 <= 60 ms ({top} clients)", p99, p99 <= 60, f"{p99:.1f} ms")
        p99 = s_top.median("p99_ms")
        check(
            f"(3) settlement (3 requests) p99 <= 60 ms ({top} clients)",
            p99,
            p99 <= 60,
            f"{p99:.1f} ms",
        )
    hook, dup = svc("webhook"), svc("webhook-dup")
    if hook:
        p99 = hook.median("request_p99_ms")
        check("(4) webhook ack p99 <= 100 ms", p99, p99 <= 100, f"{p99:.1f} ms")
        if s_top:
            r = ratio(hook.median("applied_ops"), s_top.median("ops"))
            check(f"(4) events applied/s >= 0.5 x settlements/s ({top} clients)", r, r >= 0.5)
    if dup and hook:
        r = ratio(dup.median("request_ops"), hook.median("request_ops"))
        check("(5) deliveries/s with duplicates >= 0.8 x (4)", r, r >= 0.8)
    if dup:
        check(
            "(5) zero double credits (exactly-once checks below)",
            0.0,
            money_ok,
            "all hold" if money_ok else "BROKEN",
        )
    replay = svc("replay")
    if replay and balance:
        r = ratio(replay.median("ops"), balance.median("ops"))
        check("(6) replays/s >= 0.8 x balance reads/s", r, r >= 0.8)
    return "\n".join(lines), met


def disturbance(samples: Sequence[Sample]) -> str:
    disturbed = [s for s in samples if s.cpu.other > DISTURBED_ABOVE]
    if not disturbed:
        return ""
    runs = ", ".join(f"{s.measurement.label} run {s.repeat}: {s.cpu.other:.2f}" for s in disturbed)
    return (
        f"**Warning**: {len(disturbed)} of {len(samples)} measurements ran while other work "
        f"kept more than {DISTURBED_ABOVE} CPU cores busy ({runs}); their figures are low "
        "and noisy. Re-run on a quiet machine."
    )


async def machine_info(control: Any, options: Options) -> list[str]:
    settings = {}
    for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections"):
        settings[name] = str(await control.fetchval(f"SHOW {name}"))
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():  # noqa: ASYNC240
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    dirty = run_command(["git", "status", "--porcelain", "--", "src", "alembic"])
    return [
        f"- CPU: {run_command(['nproc'])} cores (nproc), {cpu_model()}; memory {memory}",
        f"- Python {platform.python_version()}, uvicorn {version('uvicorn')} "
        f"({options.workers} workers, uvloop, httptools), FastAPI {version('fastapi')}, "
        f"SQLAlchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')}",
        f"- {await control.fetchval('SELECT version()')}",
        "- PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        f"- Code: git {run_command(['git', 'rev-parse', '--short', 'HEAD'])}"
        + (" with uncommitted changes in src/ or alembic/" if dirty else ""),
        f"- Run at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's delimited section; the rest is kept."""
    text = path.read_text() if path.exists() else ""
    block = f"{SECTION_START}\n{section.strip()}\n{SECTION_END}\n"
    pattern = re.compile(re.escape(SECTION_START) + r".*?" + re.escape(SECTION_END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    path.write_text(text)


# --- profiling ------------------------------------------------------------------------------
PROFILED = (("balance", None), ("settlement", 0))
"""Scenarios profiled after the measured rounds: the simplest read (what every request
pays) and the heaviest write (at the highest settlement concurrency)."""


async def profile(run: Run, scenario: str, clients: int, spy: str, out: Path) -> str:
    """Sample the service's workers with py-spy (``--gil``: only while a worker holds the
    GIL, i.e. runs Python) during one extra, unreported run of ``scenario``; returns a
    markdown summary: CPU split, own time by package, top frames."""
    pids = run.service.workers()
    seconds = max(3.0, run.options.seconds)
    raws = [out / f"py-spy-{scenario}-{pid}.txt" for pid in pids]
    spies = [
        subprocess.Popen(  # noqa: ASYNC220 (py-spy runs beside the load)
            [spy, "record", "--pid", str(pid), "--rate", str(PROFILE_HZ), "--gil",
             "--nonblocking", "--duration", str(int(seconds)), "--format", "raw",
             "--output", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, raw in zip(pids, raws, strict=True)
    ]  # fmt: skip
    await asyncio.sleep(0.3)
    before, began = [_user_system(pid) for pid in pids], time.monotonic()
    run.load.send(
        {
            "scenario": scenario,
            "target": "service",
            "clients": clients,
            "warmup": 0.0,
            "seconds": seconds,
            "orders_from": run.next_order - 1,
            "workers": pids,
        }
    )
    await run.load.expect("window")
    result = await run.load.expect("result")
    after, elapsed = [_user_system(pid) for pid in pids], time.monotonic() - began
    for proc in spies:
        await asyncio.to_thread(proc.wait)
    run.extra_flows += int(result.get("completed_flows", 0))
    if scenario.startswith("webhook"):
        run.next_order = int(result["orders"][1]) + 1
    user = sum(a[0] - b[0] for a, b in zip(after, before, strict=True)) / elapsed
    system = sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) / elapsed
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for raw in raws:
        if not raw.exists():
            continue
        for line in raw.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [
                _frame(f)
                for f in stack.split(";")
                if f and not f.startswith(("process ", "thread "))
            ]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            packages[_package(frames[-1])] += count
            for name in {f for f in frames if "payments_api/" in f}:
                ours[name] += count
    if not total:
        return f"(py-spy collected no samples of {scenario})"
    ops = float(result["ops"])
    cpu_ms = (user + system) / ops * 1000 if ops else math.nan
    by_package = ", ".join(f"{name} {count / total:.0%}" for name, count in packages.most_common(9))
    lines = [
        f"**{TITLES[scenario]}**, {clients} clients, {ops:.0f} ops/s while sampled "
        f"({len(pids)} workers, {seconds:.0f} s). The workers used {user:.2f} cores in user "
        f"space and {system:.2f} in the kernel: {cpu_ms:.1f} ms of CPU per operation. "
        f"{total} samples of a worker holding the GIL (py-spy --gil, {PROFILE_HZ} Hz).",
        "",
        f"Own time by package: {by_package}.",
        "",
        "| own time (the frame itself) | share | inclusive, the service's code | share |",
        "|---|---:|---|---:|",
    ]
    top_own, top_ours = own.most_common(12), ours.most_common(12)
    for k in range(max(len(top_own), len(top_ours))):
        left = f"`{top_own[k][0]}` | {top_own[k][1] / total:.1%}" if k < len(top_own) else " | "
        right = f"`{top_ours[k][0]}` | {top_ours[k][1] / total:.1%}" if k < len(top_ours) else " | "
        lines.append(f"| {left} | {right} |")
    return "\n".join(lines)


PROFILE_HZ = 200


def _user_system(pid: int) -> tuple[float, float]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, ValueError, IndexError):
        return math.nan, math.nan


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) of a ``function (path)`` frame."""
    match = re.search(r"\((.*)\)$", frame)
    path = match.group(1) if match else frame
    head = path.split("/", 1)[0]
    return head.removesuffix(".py")


def _frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (package/file.py)``."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    function, path = match.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path})"


# --- main -----------------------------------------------------------------------------------
async def bench(options: Options, url: str, workdir: Path) -> int:
    started = time.perf_counter()
    dsn = asyncpg_dsn(url)
    sentinel = StripeSentinel()
    await sentinel.start()
    env = service_env(url, sentinel.port, options.workers) | dict(options.service_env)
    os.environ.update(env)
    service_port, baseline_port = free_port(), free_port()
    traces = workdir / "traces.pickle"
    service = Server(
        "service",
        [
            str(Path(sys.executable).parent / "payments-api"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(service_port),
            "--workers",
            str(options.workers),
        ],
        env,
        service_port,
        workdir / "service.log",
    )
    baseline = Server(
        "baseline server",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.baseline_app:create",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(baseline_port),
            "--workers",
            str(options.workers),
            "--no-server-header",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        {"BENCH_DSN": dsn, "BENCH_TRACES": str(traces)},
        baseline_port,
        workdir / "baseline.log",
    )
    control = await asyncpg.connect(dsn)
    load: LoadProcess | None = None
    try:
        # The servers start (imports, workers) while the database is seeded.
        seeding = asyncio.create_task(seed(url, options.sizes))
        facts = await seeding
        print(f"seeded in {facts['seconds']:.1f} s", flush=True)
        deep_cursor = int(
            await control.fetchval(
                """SELECT id FROM earnings WHERE payee_id = $1
               ORDER BY earned_at DESC, id DESC OFFSET $2 LIMIT 1""",
                w.EARNINGS_PAYEE,
                (options.sizes.deep_page - 1) * w.PAGE_SIZE - 1,
            )
        )
        settings = Settings(
            _env_file=None,
            database_url=SecretStr(url),
            stripe_secret_key=SecretStr(w.STRIPE_TEST_KEY),
            stripe_api_base=f"http://127.0.0.1:{sentinel.port}",
            stripe_max_network_retries=0,
            stripe_webhook_secrets=[SecretStr(w.WEBHOOK_SECRET)],
            jwt_secret=SecretStr(w.JWT_SECRET),
            rate_limit_per_user="100000000/minute",
            rate_limit_per_ip="100000000/minute",
            log_level="WARNING",
        )
        recordings = await record_all(
            settings, options.sizes, order_base=facts["order_base"], deep_cursor=deep_cursor
        )
        save(recordings, traces)
        trips = describe(recordings)
        await service.ready()
        await baseline.ready()
        load = await LoadProcess.start(
            {
                "host": "127.0.0.1",
                "service_port": service_port,
                "baseline_port": baseline_port,
                "dsn": dsn,
                "traces": str(traces),
                "balance_users": options.sizes.balance_users,
                "escrow_clients": options.sizes.escrow_clients,
                "replay_keys": options.sizes.replay_keys,
                "order_base": facts["order_base"],
                "deep_cursor": deep_cursor,
            }
        )
        setup: dict[str, Any] = {}
        if "replay" in options.only:
            load.send({"scenario": "setup"})
            setup = await load.expect("result")
        deadlocks_before = int(
            await control.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
        )
        print(f"ready after {time.perf_counter() - started:.0f} s", flush=True)

        run = Run(options, control, load, service, baseline)
        measurements = plan(options)
        samples: list[Sample] = []
        total = len(measurements) * options.repeats
        done = 0
        for repeat in range(1, options.repeats + 1):
            for m in measurements:
                done += 1
                await settle_down(control)
                if options.wait_quiet:
                    await wait_for_quiet(options.wait_quiet)
                sample = await run.measure(m, repeat)
                samples.append(sample)
                r, cpu = sample.result, sample.cpu
                print(
                    f"[{done:>2}/{total}] run {repeat} {m.scenario:<15} {m.target:<7}"
                    f" x{m.clients:<2}"
                    f" {r['ops']:>7.0f} ops/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
                    f"  cpu load {cpu.load:.2f} server {cpu.server:.2f} pg {cpu.postgres:.2f}"
                    f" irq {cpu.irq:.2f} other {cpu.other:.2f}"
                    + (f"  {r['errors']} errors: {r['error_samples'][:1]}" if r["errors"] else ""),
                    flush=True,
                )
        closed_rows = [Row(m, [s for s in samples if s.measurement == m]) for m in measurements]
        opened = open_plan(options)
        rates = {m: capacity(closed_rows, m.scenario) * m.load_percent / 100 for m in opened}
        opened = [m for m in opened if rates[m] > 0]
        total = len(opened) * options.repeats
        done = 0
        for repeat in range(1, options.repeats + 1):
            for m in opened:
                done += 1
                await settle_down(control)
                if options.wait_quiet:
                    await wait_for_quiet(options.wait_quiet)
                sample = await run.measure(m, repeat, rates[m])
                samples.append(sample)
                r = sample.result
                print(
                    f"[{done:>2}/{total}] open loop, run {repeat} {m.scenario:<12}"
                    f" at {m.load_percent}% = {rates[m]:.0f}/s: {r['ops']:>7.0f} ops/s"
                    f"  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
                    f"  p99.9 {r['p999_ms']:7.2f} ms  backlog {r['backlog']}"
                    + (f"  {r['errors']} errors: {r['error_samples'][:1]}" if r["errors"] else ""),
                    flush=True,
                )
        profiles: list[str] = []
        spy = py_spy()
        if options.profile and spy:
            for scenario, level in PROFILED:
                if scenario in options.only:
                    clients = options.clients if level is None else max(options.settlement_levels)
                    await settle_down(control)
                    profiles.append(await profile(run, scenario, clients, spy, workdir))
        profile_text = "\n\n".join(profiles)
        deadlocks = (
            int(
                await control.fetchval(
                    "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                )
            )
            - deadlocks_before
        )
        await load.stop()
        load = None
        service.stop()
        baseline.stop()

        rows: list[Row] = []
        for m in measurements:
            rows.append(Row(m, [s for s in samples if s.measurement == m]))
        open_rows = [Row(m, [s for s in samples if s.measurement == m]) for m in opened]
        extra = Sample(
            Measurement("profile", "service", 0),
            0,
            {"completed_flows": run.extra_flows, "errors": 0},
            Cpu(0, 0, 0, 0, 0, 0),
        )
        money, broken = await check_money(
            control, facts, [*samples, extra], setup, sentinel, deadlocks, service.log
        )
        table = results_table(rows)
        open_table = open_loop_table(open_rows, closed_rows)
        versus = baselines_table(rows)
        goals, met = targets_table(rows, options, not broken)
        noise = disturbance(samples)
        elapsed = time.perf_counter() - started
        print(f"\n{table}\n\n{open_table}\n\n{versus}\n\n{goals}\n")
        if noise:
            print(noise + "\n")
        print("Money:\n" + "\n".join(money))
        if profile_text:
            print("\nProfile:\n" + profile_text)
        print(
            f"\nTargets {'met' if met else 'MISSED'}; "
            f"{'money checks hold' if not broken else 'MONEY BROKEN: ' + '; '.join(broken)}; "
            f"{elapsed:.0f} s in all."
        )
        if options.results is not None:
            report = render(
                options,
                await machine_info(control, options),
                table,
                open_table,
                versus,
                goals,
                noise,
                money,
                trips,
                profile_text,
                elapsed,
                facts,
                setup,
            )
            write_section(options.results, report)
            print(f"wrote the HTTP section of {options.results}")
        errors = sum(row.errors for row in [*rows, *open_rows])
        if options.json is not None:
            options.json.write_text(
                json.dumps(
                    {
                        "rows": [
                            {
                                "scenario": row.measurement.scenario,
                                "target": row.measurement.target,
                                "clients": row.measurement.clients,
                                **{key: row.median(key) for key in ("ops", "p50_ms", "p99_ms")},
                                "errors": row.errors,
                            }
                            for row in rows
                        ],
                        "open_loop": [
                            {
                                "scenario": row.measurement.scenario,
                                "load_percent": row.measurement.load_percent,
                                **{
                                    key: row.median(key)
                                    for key in ("offered_ops", "ops", "p50_ms", "p99_ms", "p999_ms")
                                },
                                "errors": row.errors,
                            }
                            for row in open_rows
                        ],
                        "targets": goals,
                        "money": money,
                        "broken": broken,
                        "errors": errors,
                        "seconds": elapsed,
                    },
                    indent=2,
                    default=str,
                )
            )
        return 1 if broken or errors else 0
    finally:
        if load is not None:
            await load.stop()
        service.stop()
        baseline.stop()
        await sentinel.stop()
        await control.close()


def render(
    options: Options,
    machine: list[str],
    table: str,
    open_table: str,
    versus: str,
    goals: str,
    noise: str,
    money: list[str],
    trips: dict[str, Any],
    profile_text: str,
    elapsed: float,
    facts: dict[str, Any],
    setup: dict[str, Any],
) -> str:
    sizes = options.sizes
    fields = Settings.model_fields
    pool = f"{fields['db_pool_size'].default}+{fields['db_max_overflow'].default}"
    overrides = (
        "**Configuration changed for this run**: "
        + ", ".join(f"`{k}={v}`" for k, v in options.service_env)
        + ".\n\n"
        if options.service_env
        else ""
    )
    trip_lines = "\n".join(
        f"| {name} | {t['round_trips']} | {t['replayed']} |" for name, t in trips.items()
    )
    return f"""# HTTP benchmark results

Generated by `bench/http.py`; this section is replaced on every full run. Command:

```
{options.command}
```

{overrides}What runs: the service under `payments-api serve` (uvicorn, {options.workers} workers,
uvloop, httptools, the service's default pool of {pool} connections per worker, JSON request logs
at INFO to a file, the rate limiter on at a limit no scenario reaches), on a database
created and migrated for the run ({facts["seconds"]:.0f} s to seed), with Stripe pointed at a
local port that only counts connections; the load from a second process on loopback
(`bench/load.py`: asyncio + httptools, one keep-alive connection per client, spread
evenly over the uvicorn workers as a load balancer would);
{options.warmup:g} s warm-up + {options.seconds:g} s timed per measurement; before each,
`VACUUM ANALYZE` and `CHECKPOINT`; every measurement of a round in turn, {options.repeats}
rounds, medians reported (p50/p99: medians of the runs' percentiles). Clients:
{options.clients} unless stated.

- **(1)** `GET /api/v1/me/balance` for a random user of {sizes.balance_users:,}.
- **(2)** `GET /api/v1/me/earnings` of a payee with {sizes.earnings_rows:,} entries: page 1,
  and page {sizes.deep_page:,} through its keyset cursor; every response carries the summary.
- **(3)** one settlement = `POST /api/v1/escrows`, `.../accept` (the payee), `.../complete`, each
  with its Idempotency-Key; each client is its own customer/payee pair, every fee goes
  to the platform's `platform_fees`. ops/s = settlements/s, latency per settlement.
- **(4)** a signed `payment_intent.succeeded` for a distinct pending top-up order per
  delivery (verified, stored, applied as a credit). ops/s = deliveries/s.
- **(5)** as (4), but 30% of the events are delivered again later and 10% twice at the
  same time (two connections).
- **(6)** replays of {sizes.replay_keys} completed `POST /api/v1/escrows` (same key, same body).

Baselines, measured in the same run: **A** the request's SQL statements, recorded from the
service itself (`bench/record.py`) and replayed on raw asyncpg with one connection per
client, no HTTP; **A0** (settlement only) a settlement's business effect in minimal
hand-written SQL, one statement per request (`bench/a0.py`), raw asyncpg, one connection
per client; **B** a bare FastAPI route returning a constant, same uvicorn settings;
**C** a minimal FastAPI route (JWT or HMAC check, the same recorded SQL on an asyncpg pool,
rows as JSON). "CPU cores" (medians over the timed windows): the load process, the server
measured (the service or the baseline server; none for A), the database's backends
(polled every {BACKEND_POLL * 1000:.0f} ms, so new connections and parallel query workers count),
interrupt time (mostly the loopback network, which no process is charged for), and
everything else on the machine (WAL writer, checkpointer, other people's work:
measurements with more than {DISTURBED_ABOVE} such cores are flagged). Whole run:
{elapsed:.0f} s.

## Machine

{chr(10).join(machine)}

## Results

{table}

## Open loop

Operations arriving at a fixed rate, {OPEN_LOOP_LOADS[0]}% and {OPEN_LOOP_LOADS[1]}% of the
closed-loop capacity measured above (the best of the service's client levels), whether
or not earlier ones have finished; each is served by the first free of
{OPEN_LOOP_CLIENTS} connections. Latency runs from the scheduled arrival, so queueing
for a connection counts (no coordinated omission); percentiles are medians of the
runs'. Same warm-up, window and rounds as above, run after the closed-loop rounds.

{open_table}

## Service against its baselines (throughput ratios)

{versus}

## Targets

{goals}
{chr(10) + noise + chr(10) if noise else ""}
## Round trips per request (recorded)

| request | statements sent (BEGIN/COMMIT included) | replayed by A and C |
|---|---:|---:|
{trip_lines}

## Where the time goes

What limits the service in each scenario, and what would reach the missed targets:
[README.md](README.md#reading-the-http-figures), from these profiles and the CPU columns.

{profile_text or "(no profile: run with --profile and py-spy installed)"}

## Money after the run

{chr(10).join(money)}
"""


def main(argv: Sequence[str] | None = None, prog: str = "bench.http") -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv, prog)
    admin = os.environ.get("BENCH_DATABASE_URL") or admin_url()
    url = create_database(admin, options.database)
    count = len(plan(options)) * options.repeats
    print(
        f"database {options.database} migrated; {count} measurements of "
        f"{options.warmup:g}+{options.seconds:g} s, {options.workers} uvicorn workers",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="payments-bench-http-") as workdir:
        return asyncio.run(bench(options, url, Path(workdir)))


if __name__ == "__main__":
    sys.exit(main())
