"""CPU per balance read: the service against baseline C, in one process.

``.venv/bin/python -m bench.readpath [--requests N] [--repeats R] [--users U] [--write]``

Throughput on this machine (2 cores, shared by several agents) is too noisy to tell a
lean read path from a heavy one, so this measures what a request costs the Python
process instead: ``GET /api/v1/me/balance`` sent straight to the ASGI application (no
HTTP server, no client library: a prepared ``scope``, a ``receive`` that hands over the
empty body, a ``send`` that keeps the messages), one request at a time, with
``time.process_time()`` (this process's CPU, user + system: the time spent waiting for
PostgreSQL is not counted) around N requests.

Both applications run in this process, on the same freshly migrated and seeded database
(``payments_bench_readpath``), measured in turn, R rounds (the order alternating each
round), medians reported:

- **service**: ``create_app`` as ``payments-api serve`` builds it: every middleware,
  the rate limiter on (memory storage, at a limit never reached), JSON request logs at
  INFO (written to /dev/null: the formatting is paid, the disk is not).
- **C**: ``bench/baseline_app.py``'s ``/c/balance`` (the JWT check with the same library,
  the service's recorded SQL on a plain asyncpg pool, rows as JSON), as in
  ``bench/http.py``.

The users are read in turn, more of them than the service's verified-token cache holds,
so every request verifies its token (as with the HTTP benchmark's random user of
100,000). Uvicorn's own cost per request (the same for both) is not in these figures, so
the ratio is stricter than the HTTP benchmark's throughput ratio.

Also reported: the PostgreSQL backends' CPU per request (``/proc``, clock ticks, so
coarse), which is what the database pays for the same statement.

``--instructions N``: then each app again in a process of its own under valgrind's
callgrind, counting the user-space instructions of N requests (after 300 uncounted
ones): deterministic whatever else the machine runs, so fit to compare two versions of
the code, but blind to the kernel's share (socket writes to PostgreSQL, the log write)
and to cache misses, which the CPU time includes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
from pydantic import SecretStr
from tests.db_setup import admin_url

from bench import workload as w
from bench.replay import Recorder, Recording, save
from bench.seed import create_database, seed
from payments_api.db import asyncpg_dsn
from payments_api.main import build_state, create_app, dispose_state
from payments_api.settings import Settings

DATABASE = "payments_bench_readpath"
PATH = "/api/v1/me/balance"
C_PATH = "/c/balance"

App = Callable[[dict[str, Any], Any, Any], Any]


def sizes(users: int) -> w.Sizes:
    return w.Sizes(
        balance_users=users,
        earnings_rows=100,
        orders=100,
        deep_page=1,
        escrow_clients=1,
        replay_keys=1,
    )


def settings_for(url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=SecretStr(url),
        stripe_secret_key=SecretStr(w.STRIPE_TEST_KEY),
        stripe_api_base="http://127.0.0.1:9",  # nothing may call Stripe
        stripe_max_network_retries=0,
        stripe_webhook_secrets=[SecretStr(w.WEBHOOK_SECRET)],
        jwt_secret=SecretStr(w.JWT_SECRET),
        rate_limit_enabled=True,
        rate_limit_storage_uri="memory://",
        rate_limit_per_user="100000000/minute",
        rate_limit_per_ip="100000000/minute",
        log_level="INFO",
        log_json=True,
    )


class Driver:
    """Sends GETs straight to an ASGI app, as uvicorn would hand them over."""

    def __init__(self, app: App, path: str, tokens: list[str]) -> None:
        self.app = app
        self.path = path
        self.headers = [
            [
                (b"host", b"bench"),
                (b"authorization", f"Bearer {token}".encode()),
                (b"accept", b"*/*"),
            ]
            for token in tokens
        ]
        self.next = 0

    async def request(self) -> tuple[int, bytes]:
        headers = self.headers[self.next % len(self.headers)]
        self.next += 1
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        status = int(sent[0]["status"])
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return status, body

    async def run(self, n: int) -> float:
        """CPU seconds (this process) for ``n`` requests."""
        started = time.process_time()
        for _ in range(n):
            status, body = await self.request()
            if status != 200:
                raise RuntimeError(f"{self.path}: {status} {body[:300]!r}")
        return time.process_time() - started


@contextlib.contextmanager
def recorder_removed_afterwards() -> Iterator[None]:
    """Record with ``bench.replay.Recorder``, then put asyncpg's methods back: its
    wrappers would otherwise be paid by every measured request."""
    from asyncpg.connection import Connection
    from asyncpg.prepared_stmt import PreparedStatement

    saved = {
        (cls, name): cls.__dict__[name]
        for cls in (Connection, PreparedStatement)
        for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany")
        if name in cls.__dict__
    }
    try:
        yield
    finally:
        for (cls, name), method in saved.items():
            setattr(cls, name, method)
        Recorder._installed = False


def logs_to_devnull() -> IO[str]:
    """As serve's request log to a file: every line formatted, written where it costs no
    disk."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 (the caller closes it)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    return devnull


@contextlib.asynccontextmanager
async def service_app(settings: Settings) -> AsyncIterator[App]:
    app = create_app(settings)
    devnull = logs_to_devnull()
    state = await build_state(settings)
    app.state.resources = state
    try:
        yield app
    finally:
        await dispose_state(state)
        devnull.close()


@contextlib.asynccontextmanager
async def baseline_app(dsn: str, traces: Path) -> AsyncIterator[App]:
    os.environ["BENCH_DSN"] = dsn
    os.environ["BENCH_TRACES"] = str(traces)
    from bench.baseline_app import create

    app = create()
    async with app.router.lifespan_context(app):
        yield app


async def record_balance(app: App, token: str, user: str, traces: Path) -> None:
    driver = Driver(app, PATH, [token])
    await driver.request()  # warm-up: first-use work is not recorded
    with recorder_removed_afterwards(), Recorder.recording() as calls:
        status, body = await driver.request()
    if status != 200:
        raise RuntimeError(f"recording: {status} {body[:300]!r}")
    save([Recording("balance", list(calls), {"user": user}, {})], traces)


async def backend_cpu(dsn: str) -> float:
    """CPU seconds of every backend of the database but this query's (/proc)."""
    connection = await asyncpg.connect(dsn)
    try:
        pids = [
            row["pid"]
            for row in await connection.fetch(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    finally:
        await connection.close()
    return process_cpu(pids)


def process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) of ``pids`` together, as /proc shows them."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@dataclass(frozen=True, slots=True)
class Round:
    service_us: float
    c_us: float
    service_db_us: float
    c_db_us: float

    @property
    def ratio(self) -> float:
        """The service's speed relative to C's on this CPU: C's cost / the service's."""
        return self.c_us / self.service_us


async def measure(driver: Driver, n: int, dsn: str, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        await driver.request()
    db_before = await backend_cpu(dsn)
    seconds = await driver.run(n)
    db_after = await backend_cpu(dsn)
    return seconds / n * 1e6, (db_after - db_before) / n * 1e6


async def run(
    url: str, n: int, repeats: int, users: int, instructions: int = 0
) -> tuple[list[Round], dict[str, int]]:
    await seed(url, sizes(users))
    settings = settings_for(url)
    subjects = [w.balance_user(i) for i in range(1, users + 1)]
    tokens_by_user = w.mint_tokens(subjects, ["customer"])
    tokens = [tokens_by_user[s] for s in subjects]
    dsn = asyncpg_dsn(url)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory() as folder:
        traces = Path(folder) / "traces.pickle"
        async with service_app(settings) as service:
            await record_balance(service, tokens[0], subjects[0], traces)
            async with baseline_app(dsn, traces) as baseline:
                drivers = {
                    "service": Driver(service, PATH, tokens),
                    "c": Driver(baseline, C_PATH, tokens),
                }
                # Every user once through the service first: rows provisioned, caches warm.
                for _ in range(users):
                    await drivers["service"].request()
                for k in range(repeats):
                    order = ("service", "c") if k % 2 == 0 else ("c", "service")
                    figures: dict[str, tuple[float, float]] = {}
                    for name in order:
                        figures[name] = await measure(drivers[name], n, dsn, warmup=n // 10)
                    rounds.append(
                        Round(
                            service_us=figures["service"][0],
                            c_us=figures["c"][0],
                            service_db_us=figures["service"][1],
                            c_db_us=figures["c"][1],
                        )
                    )
                    print(
                        f"round {k + 1}/{repeats}: service {rounds[-1].service_us:.0f} us, "
                        f"C {rounds[-1].c_us:.0f} us, ratio {rounds[-1].ratio:.2f}",
                        file=sys.stderr,
                    )
        counted = {
            name: count_instructions(name, url, traces, instructions, users)
            for name in (("service", "c") if instructions else ())
        }
    return rounds, counted


# --- instructions (callgrind) -----------------------------------------------------------
CHILD = "--instructions-child"


def count_instructions(target: str, url: str, traces: Path, n: int, users: int) -> int:
    """User-space instructions per request of ``target``, counted by callgrind in a
    process of its own: deterministic (no other process's work counts), but blind to
    the kernel's share (the socket writes) and to cache misses."""
    return callgrind_instructions(
        ["bench.readpath", CHILD, target, url, str(traces), str(n), str(users)], n
    )


def callgrind_instructions(module_and_arguments: list[str], n: int) -> int:
    """``python -m <module_and_arguments>`` under callgrind, instrumentation off at the
    start (the child turns it on around its ``n`` counted operations): the user-space
    instructions per operation."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            *module_and_arguments,
        ]
        subprocess.run(command, check=True, capture_output=True)
        totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[-1].split()[1]) // n


async def instructions_child(target: str, url: str, traces: Path, n: int, users: int) -> None:
    """Runs under callgrind: warms up, then counts ``n`` requests only."""
    subjects = [w.balance_user(i) for i in range(1, users + 1)]
    tokens_by_user = w.mint_tokens(subjects, ["customer"])
    tokens = [tokens_by_user[s] for s in subjects]
    async with contextlib.AsyncExitStack() as stack:
        service = await stack.enter_async_context(service_app(settings_for(url)))
        driver = Driver(service, PATH, tokens)
        if target == "c":
            baseline = await stack.enter_async_context(baseline_app(asyncpg_dsn(url), traces))
            driver = Driver(baseline, C_PATH, tokens)
        for _ in range(300):  # the counted requests' tokens are not in the cache
            await driver.request()
        control = ["callgrind_control", "--instr=on", str(os.getpid())]
        await asyncio.to_thread(subprocess.run, control, check=True, capture_output=True)
        await driver.run(n)
        control[1] = "--instr=off"
        await asyncio.to_thread(subprocess.run, control, check=True, capture_output=True)


def render(
    rounds: Sequence[Round],
    counted: dict[str, int],
    n: int,
    users: int,
    command: str,
    label: str,
) -> str:
    service = statistics.median(r.service_us for r in rounds)
    c = statistics.median(r.c_us for r in rounds)
    ratio = statistics.median(r.ratio for r in rounds)
    service_db = statistics.median(r.service_db_us for r in rounds)
    c_db = statistics.median(r.c_db_us for r in rounds)
    spread = ", ".join(f"{r.ratio:.2f}" for r in rounds)
    load = os.getloadavg()[0]
    return "\n".join(
        [
            f"{label} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load:.1f}), "
            f"`{command}`: {len(rounds)} rounds of {n} balance reads per app, {users} users "
            "in turn (every token verified), medians:",
            "",
            "| app | Python CPU us / request | PostgreSQL CPU us / request |",
            "|---|---:|---:|",
            f"| service | {service:.0f} | {service_db:.0f} |",
            f"| C: FastAPI + asyncpg | {c:.0f} | {c_db:.0f} |",
            "",
            f"Service speed vs C (C's CPU / the service's, per round): **{ratio:.2f}x** "
            f"(rounds: {spread}).",
            *(
                [
                    "",
                    f"Instructions per request (callgrind, user space): service "
                    f"{counted['service']:,}, C {counted['c']:,}: "
                    f"**{counted['c'] / counted['service']:.2f}x**.",
                ]
                if counted
                else []
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readpath", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="N per app and round")
    parser.add_argument("--repeats", type=int, default=7, help="R rounds")
    parser.add_argument("--users", type=int, default=5000, help="balance users read in turn")
    parser.add_argument("--label", default="Balance read, CPU per request")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count instructions of N requests per app under valgrind's callgrind",
    )
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == [CHILD]:
        target, url, traces, n, users = arguments[1:]
        asyncio.run(instructions_child(target, url, Path(traces), int(n), int(users)))
        return 0
    args = parser.parse_args(arguments)
    admin = os.environ.get("BENCH_DATABASE_URL") or admin_url()
    url = create_database(admin, DATABASE)
    command = ".venv/bin/python -m bench.readpath" + "".join(f" {a}" for a in arguments)
    rounds, counted = asyncio.run(
        run(url, args.requests, args.repeats, args.users, args.instructions)
    )
    text = render(rounds, counted, args.requests, args.users, command, args.label)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
