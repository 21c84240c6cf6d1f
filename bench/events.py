"""Outgoing-events benchmark: what the outbox costs a settlement, and how fast events go out.

Run ``.venv/bin/python -m bench.events`` (``--quick`` for a smoke run). On a database it
drops and recreates (``payments_bench_events_<pid>``), it measures, in one run:

1. **Settlement with and without the outbox.** ``clients`` concurrent customers each
   settle jobs through ``EscrowService`` (create, accept, complete: three transactions,
   three events) for ``--seconds``:
   - ``off``: the outbox and the balance alerts replaced by no-ops (the code before
     events existed);
   - ``on``: events written, no endpoint registered (one INSERT per change, plus the
     balance-alert check per posting);
   - ``on+endpoint``: one endpoint that wants every type (the event's delivery row and
     a delivery job in the same transaction).
   The variants are interleaved and repeated; medians are reported, with the ratio of
   each to ``off`` measured in the same run.
2. **Delivery throughput.** ``--events`` events to one endpoint, a receiver in its own
   process (uvicorn, answering 204), sent by 1 and by 4 concurrent
   ``DeliveryService`` workers; deliveries per second and attempts (exactly one each).

Figures go to ``bench/RESULTS.md`` between ``<!-- events-bench:start -->`` and
``<!-- events-bench:end -->`` (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from tests.db_setup import create_named_database, drop_test_database

from payments_api.db import RawStatement
from payments_api.escrow.schemas import EscrowCreate
from payments_api.escrow.service import EscrowService
from payments_api.events.delivery import DeliveryService
from payments_api.events.outbox import emit
from payments_api.events.schemas import BalanceAlertRead, WebhookEndpointCreate
from payments_api.events.service import EventService
from payments_api.events.types import EventType
from payments_api.ledger import post_statement as ledger_post_statement
from payments_api.ledger import repository as ledger_repository
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.settings import Environment, Settings
from payments_api.users.models import User

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- events-bench:start -->"
SECTION_END = "<!-- events-bench:end -->"
VARIANTS = ("off", "on", "on+endpoint")
PRICE = 1_000


def settings_for(url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.test,
        database_url=SecretStr(url),
        jwt_secret=SecretStr("bench-" + "x" * 40),
        stripe_secret_key=SecretStr("sk_test_bench"),
        events_allow_private_addresses=True,
        log_json=True,
        log_level="WARNING",
    )


async def seed(sessions: async_sessionmaker[AsyncSession], clients: int) -> None:
    async with sessions.begin() as session:
        for n in range(clients):
            await session.execute(
                text("INSERT INTO users (id, roles) VALUES (:c, '{customer}'), (:p, '{payee}')"),
                {"c": f"bench-customer-{n}", "p": f"bench-payee-{n}"},
            )
            await LedgerService(session).post(
                NewTransaction(
                    type="topup",
                    cause_type=CauseType.system,
                    cause_key=f"bench-fund:{n}",
                    postings=[
                        PostingSpec(
                            AccountRef.user(f"bench-customer-{n}", AccountKind.available, "usd"),
                            10**10,
                        ),
                        PostingSpec(
                            AccountRef.platform(AccountKind.stripe_balance, "usd"), -(10**10)
                        ),
                    ],
                )
            )


async def settle_for(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client: int,
    deadline: float,
) -> int:
    """Create, accept and complete jobs until the deadline; how many were completed."""
    done = 0
    async with sessions() as session:
        customer = await session.get(User, f"bench-customer-{client}")
        payee = await session.get(User, f"bench-payee-{client}")
    if customer is None or payee is None:  # pragma: no cover - seeded above
        raise RuntimeError("bench users missing")
    body = EscrowCreate(payee_id=payee.id, amount=PRICE, currency="usd", reference="bench")
    while time.perf_counter() < deadline:
        async with sessions.begin() as session:
            escrow, _ = await EscrowService(session, settings).create(
                customer, body, idempotency_key=uuid.uuid4().hex
            )
        async with sessions.begin() as session:
            await EscrowService(session, settings).accept(escrow.id, payee)
        async with sessions.begin() as session:
            await EscrowService(session, settings).complete(escrow.id, customer)
        done += 1
    return done


async def no_emit(*_args: Any, **_kwargs: Any) -> None:
    return None


def no_stage(*_args: Any, **_kwargs: Any) -> None:
    return None


def off_patches() -> list[Any]:
    """The ``off`` variant: no event staged or written, and the ledger's posting
    statement without the balance alerts' and the event's parts (the auto-reloads' part
    stays: it is not an event): the code before events existed."""
    return [
        mock.patch.object(EscrowService, "_staged", staticmethod(no_stage)),
        mock.patch("payments_api.escrow.posting.emit_staged", no_emit),
        mock.patch.object(
            ledger_repository,
            "RAW_POST",
            RawStatement.of(ledger_post_statement.post_statement(alerts=False)),
        ),
        mock.patch("payments_api.ledger.service.balance_alerts.crossed", no_emit),
    ]


async def measure_settlements(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    variant: str,
    clients: int,
    seconds: float,
) -> tuple[float, float, float]:
    """Settlements/s, and the CPU each took in milliseconds: this process's (the
    service's Python) and the database backends' (from /proc, as bench/http.py reads it;
    0 when they are not readable)."""
    patches = off_patches() if variant == "off" else []
    async with sessions.begin() as session:
        await session.execute(
            text("UPDATE webhook_endpoints SET status = :s WHERE description = 'settle'"),
            {"s": "enabled" if variant == "on+endpoint" else "disabled"},
        )
    for patch in patches:
        patch.start()
    events = await count_events(sessions)
    try:
        backends = await backend_cpu(sessions)
        own = time.process_time()
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(settle_for(sessions, settings, n, deadline) for n in range(clients))
        )
        elapsed = time.perf_counter() - started
        own = time.process_time() - own
        backends = await backend_cpu(sessions, backends)
    finally:
        for patch in patches:
            patch.stop()
    written = await count_events(sessions) - events
    if written != (0 if variant == "off" else 3 * sum(counts)):
        raise RuntimeError(f"{variant}: {written} events for {sum(counts)} settlements")
    done = max(sum(counts), 1)
    cpu_ms = 1000 / done
    return sum(counts) / elapsed, own * cpu_ms, sum(backends.values()) * cpu_ms


def process_cpu(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each of ``pids`` that /proc shows."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


async def backend_cpu(
    sessions: async_sessionmaker[AsyncSession], since: dict[int, float] | None = None
) -> dict[int, float]:
    """CPU seconds of every backend of this database (user + system, /proc); with
    ``since``, the increase since then (backends that came or went count from 0)."""
    async with sessions() as session:
        pids = (
            await session.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        ).all()
    now = process_cpu(pids)
    if since is None:
        return now
    return {pid: value - since.get(pid, 0.0) for pid, value in now.items()}


# --- the same settlements through HTTP ------------------------------------------------
OFF_ENV = "PAYMENTS_BENCH_EVENTS_OFF"
"""Set (to 1) in a service's environment, with :data:`OFF_SITE` on its PYTHONPATH: every
process of it (uvicorn's workers too) starts with :func:`off_patches` applied."""
OFF_SITE = ROOT / "bench" / "events_off"
HTTP_VARIANTS = ("off", "on")


def start_services(url: str, workers: int, workdir: Path) -> dict[str, Any]:
    """The service twice on the same database, ``payments-api serve`` as bench/http.py
    starts it: ``on`` as it is, ``off`` with the outbox patched out (:data:`OFF_ENV`)."""
    from bench.http import Server, free_port, service_env

    servers: dict[str, Any] = {}
    for variant in HTTP_VARIANTS:
        port = free_port()
        env = service_env(url, free_port(), workers)  # nothing listens where Stripe is
        env["PAYMENTS_LOG_LEVEL"] = "WARNING"
        if variant == "off":
            env[OFF_ENV] = "1"
            env["PYTHONPATH"] = os.pathsep.join(
                [str(OFF_SITE), str(ROOT), os.environ.get("PYTHONPATH", "")]
            )
        argv = [str(Path(sys.executable).parent / "payments-api"), "serve", "--host"]
        argv += ["127.0.0.1", "--port", str(port), "--workers", str(workers)]
        servers[variant] = Server(f"service ({variant})", argv, env, port, workdir / variant)
    return servers


async def open_spread(server: Any, count: int) -> list[Any]:
    """``count`` keep-alive connections spread evenly over the server's workers (as
    bench/load.py does: the kernel often hands most of them to one worker)."""
    from bench.load import Connection, accepted_by

    workers = server.workers()
    share = count // len(workers)
    want = {pid: share + (k < count % len(workers)) for k, pid in enumerate(workers)}
    out: list[Any] = []
    deadline = time.monotonic() + 600  # a worker may still be starting (a busy machine)
    while len(out) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"could not spread {count} connections over {workers}")
        conn = await Connection.open("127.0.0.1", server.port)
        owner = await accepted_by(conn, server.port, workers)
        if owner is not None and want.get(owner, 0) > 0:
            want[owner] -= 1
            out.append(conn)
        else:
            conn.close()
            await asyncio.sleep(0.01)
    return out


async def http_settle_for(conn: Any, tokens: dict[str, str], client: int, deadline: float) -> int:
    """POST create, accept, complete (each with an Idempotency-Key) until the deadline."""
    from bench.load import expect, http_request

    customer, payee = f"bench-customer-{client}", f"bench-payee-{client}"
    body = EscrowCreate(
        payee_id=payee, amount=PRICE, currency="usd", reference="bench"
    ).model_dump_json(exclude_none=True)

    def post(path: str, user: str, content: bytes = b"") -> bytes:
        headers = [
            ("Authorization", f"Bearer {tokens[user]}"),
            ("Idempotency-Key", uuid.uuid4().hex),
        ]
        if content:
            headers.append(("Content-Type", "application/json"))
        return http_request("POST", path, "bench", headers, content)

    done = 0
    while time.perf_counter() < deadline:
        created = expect(await conn.request(post("/api/v1/escrows", customer, body.encode())), 201)
        escrow = created.json()["id"]
        expect(await conn.request(post(f"/api/v1/escrows/{escrow}/accept", payee)), 200)
        expect(await conn.request(post(f"/api/v1/escrows/{escrow}/complete", customer)), 200)
        done += 1
    return done


async def measure_http(
    args: argparse.Namespace, sessions: async_sessionmaker[AsyncSession], url: str
) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, float]]]]:
    """Settlements/s through HTTP against the ``off`` and the ``on`` service, measured in
    turn (0.5 s warm-up each), ``args.repeats`` times, and the CPU milliseconds per
    settlement of the service's processes and of the database backends. Checks that
    ``off`` wrote no event and ``on`` three per settlement."""
    import tempfile

    from bench import workload as w

    async with sessions.begin() as session:
        await session.execute(text("UPDATE webhook_endpoints SET status = 'disabled'"))
    customers = [f"bench-customer-{n}" for n in range(args.clients)]
    payees = [f"bench-payee-{n}" for n in range(args.clients)]
    tokens = w.mint_tokens(customers, ["customer"]) | w.mint_tokens(payees, ["payee"])
    rates: dict[str, list[float]] = {variant: [] for variant in HTTP_VARIANTS}
    cpu: dict[str, list[tuple[float, float]]] = {variant: [] for variant in HTTP_VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-events-") as workdir:
        servers = start_services(url, args.http_workers, Path(workdir))
        try:
            for server in servers.values():
                await server.ready(within=600)  # a busy machine starts slowly
            conns = {v: await open_spread(servers[v], args.clients) for v in HTTP_VARIANTS}
            for repeat in range(args.repeats + 1):  # the first round warms both up
                for variant in HTTP_VARIANTS:
                    if any(conn.closed for conn in conns[variant]):
                        # uvicorn closes a keep-alive connection idle for 5 s, and these
                        # idled through the other variant's round: open them again.
                        for conn in conns[variant]:
                            conn.close()
                        conns[variant] = await open_spread(servers[variant], args.clients)
                    seconds = 0.5 if repeat == 0 else args.seconds
                    events = await count_events(sessions)
                    pids = servers[variant].pids()
                    service_cpu = process_cpu(pids)
                    backends = await backend_cpu(sessions)
                    started = time.perf_counter()
                    counts = await asyncio.gather(
                        *(
                            http_settle_for(conn, tokens, n, started + seconds)
                            for n, conn in enumerate(conns[variant])
                        )
                    )
                    elapsed = time.perf_counter() - started
                    backends = await backend_cpu(sessions, backends)
                    service_cpu = {
                        pid: cpu - service_cpu.get(pid, 0.0)
                        for pid, cpu in process_cpu(pids).items()
                    }
                    done = sum(counts)
                    written = await count_events(sessions) - events
                    if written != (3 * done if variant == "on" else 0):
                        raise RuntimeError(f"{variant}: {written} events for {done} settlements")
                    if repeat:
                        rates[variant].append(done / elapsed)
                        cpu[variant].append(
                            (
                                sum(service_cpu.values()) * 1000 / max(done, 1),
                                sum(backends.values()) * 1000 / max(done, 1),
                            )
                        )
            for pool in conns.values():
                for conn in pool:
                    conn.close()
        finally:
            for server in servers.values():
                server.stop()
    return rates, cpu


async def count_events(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM events")) or 0)


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import uvicorn\n"
        "from starlette.applications import Starlette\n"
        "from starlette.responses import Response\n"
        "from starlette.routing import Route\n"
        "async def hook(request):\n"
        "    await request.body()\n"
        "    return Response(status_code=204)\n"
        "app = Starlette(routes=[Route('/hook', hook, methods=['POST'])])\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)  # the receiver process starting up
    return process, f"http://127.0.0.1:{port}/hook"


async def measure_delivery(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, events: int, workers: int
) -> tuple[float, int]:
    async with sessions.begin() as session:
        # Only this run's events are due: the settlements' deliveries are not measured.
        await session.execute(text("DELETE FROM event_delivery_attempts"))
        await session.execute(text("DELETE FROM event_deliveries"))
        await session.execute(
            text("UPDATE webhook_endpoints SET status = 'enabled' WHERE description = 'delivery'")
        )
        await session.execute(
            text("UPDATE webhook_endpoints SET status = 'disabled' WHERE description = 'settle'")
        )
    run = uuid.uuid4().hex[:8]
    async with sessions.begin() as session:
        for n in range(events):
            await emit(
                session,
                EventType.balance_low,
                BalanceAlertRead(currency="usd", threshold=100, below=True, available=n),
                change_key=f"bench:{run}:{n}",
                user_ids=["bench-customer-0"],
            )
    services = [DeliveryService(sessions, settings) for _ in range(workers)]
    started = time.perf_counter()
    try:
        sent = await asyncio.gather(*(service.sweep(limit=events) for service in services))
    finally:
        for service in services:
            await service.aclose()
    elapsed = time.perf_counter() - started
    async with sessions() as session:
        attempts = await session.scalar(
            text(
                "SELECT count(*) FROM event_delivery_attempts a "
                "JOIN event_deliveries d ON d.id = a.delivery_id "
                "JOIN events e ON e.id = d.event_id WHERE e.change_key LIKE :k"
            ),
            {"k": f"bench:{run}:%"},
        )
    return sum(sent) / elapsed, int(attempts or 0)


async def run(args: argparse.Namespace, url: str) -> tuple[str, int]:
    load_at_start = os.getloadavg()[0]  # other work on the machine shows here
    settings = settings_for(url)
    engine = create_async_engine(url, pool_size=args.clients + 4, max_overflow=4)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    receiver, receiver_url = start_receiver()
    status = 0
    try:
        await seed(sessions, args.clients)
        async with sessions.begin() as session:
            service = EventService(session, settings)
            await service.register(WebhookEndpointCreate(url=receiver_url, description="settle"))
            await service.register(WebhookEndpointCreate(url=receiver_url, description="delivery"))
        async with sessions.begin() as session:
            # Registered enabled; only the delivery measurement wants it. Enabled during
            # the settlements, it would give every event a delivery row: ``on`` would
            # measure ``on+endpoint``.
            await session.execute(
                text(
                    "UPDATE webhook_endpoints SET status = 'disabled' "
                    "WHERE description = 'delivery'"
                )
            )
        rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        cpu: dict[str, list[tuple[float, float]]] = {variant: [] for variant in VARIANTS}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                rate, own, backends = await measure_settlements(
                    sessions, settings, variant, args.clients, args.seconds
                )
                rates[variant].append(rate)
                cpu[variant].append((own, backends))
        http_rates, http_cpu = (
            await measure_http(args, sessions, url) if args.http_workers else ({}, {})
        )
        delivery: dict[int, tuple[float, int]] = {}
        for workers in (1, 4):
            delivery[workers] = await measure_delivery(sessions, settings, args.events, workers)
            if delivery[workers][1] != args.events:
                status = 1
    finally:
        receiver.terminate()
        receiver.wait()
        await engine.dispose()
    medians = {variant: statistics.median(values) for variant, values in rates.items()}
    lines = [
        f"Outgoing events (`{' '.join(['python -m bench.events', *args.argv])}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{args.clients} clients, {args.seconds:g} s x {args.repeats}; load average "
        f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end):",
        "",
        "| settlement (create, accept, complete) | jobs/s (median) | vs `off` "
        "| runs (jobs/s, in turn) | CPU ms / job: service (Python), PostgreSQL |",
        "|---|---:|---:|---|---:|",
    ]
    for variant in VARIANTS:
        ratio = medians[variant] / medians["off"] if medians["off"] else 0.0
        runs = ", ".join(f"{rate:.0f}" for rate in rates[variant])
        own = statistics.median(c[0] for c in cpu[variant])
        backends = statistics.median(c[1] for c in cpu[variant])
        lines.append(
            f"| {variant} | {medians[variant]:.1f} | {ratio:.2f}x | {runs} "
            f"| {own:.2f}, {backends:.2f} |"
        )
    if http_rates:
        http_medians = {v: statistics.median(r) for v, r in http_rates.items()}
        lines += [
            "",
            f"The same settlements through HTTP (`POST /api/v1/escrows`, `.../accept`, "
            f"`.../complete` with Idempotency-Keys, one keep-alive connection per client), "
            f"`payments-api serve --workers {args.http_workers}` twice on the same database: "
            f"as it is (`on`), and with the same patches as `off` applied in every process "
            f"(`{OFF_ENV}=1`, `bench/events_off/sitecustomize.py`); measured in turn:",
            "",
            "| settlement through HTTP | jobs/s (median) | vs `off` | runs (jobs/s, in turn) "
            "| CPU ms / job: service processes, PostgreSQL |",
            "|---|---:|---:|---|---:|",
        ]
        for variant in HTTP_VARIANTS:
            ratio = http_medians[variant] / http_medians["off"] if http_medians["off"] else 0.0
            runs = ", ".join(f"{rate:.0f}" for rate in http_rates[variant])
            own = statistics.median(c[0] for c in http_cpu[variant])
            backends = statistics.median(c[1] for c in http_cpu[variant])
            lines.append(
                f"| {variant} | {http_medians[variant]:.1f} | {ratio:.2f}x | {runs} "
                f"| {own:.2f}, {backends:.2f} |"
            )
    lines += [
        "",
        "| delivery | workers | deliveries/s | attempts for events |",
        "|---|---:|---:|---:|",
    ]
    for workers, (rate, attempts) in delivery.items():
        lines.append(f"| to one endpoint | {workers} | {rate:.0f} | {attempts} / {args.events} |")
    return "\n".join(lines) + "\n", status


def write_section(path: Path, body: str) -> None:
    text_ = path.read_text() if path.exists() else ""
    block = f"{SECTION_START}\n{body}{SECTION_END}\n"
    if SECTION_START in text_ and SECTION_END in text_:
        head, rest = text_.split(SECTION_START, 1)
        text_ = head + block + rest.split(SECTION_END, 1)[1].lstrip("\n")
    else:
        text_ = text_.rstrip("\n") + "\n\n## Outgoing events (`bench/events.py`)\n\n" + block
    path.write_text(text_)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run (about 10 s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per settlement measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=2000, help="events per delivery run")
    parser.add_argument(
        "--http-workers",
        type=int,
        default=2,
        help="uvicorn workers of each service for the HTTP measurement (0: skip it)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args(raw)
    if args.quick:
        args.seconds, args.repeats, args.clients, args.events = 0.5, 1, 2, 50
    args.argv = raw
    name = f"payments_bench_events_{os.getpid()}"
    url = create_named_database(name)  # runs its own event loop: before ours
    try:
        report, status = asyncio.run(run(args, url))
    finally:
        drop_test_database(url)  # its own event loop too: after ours
    sys.stdout.write(report)
    if not (args.quick or args.no_write):
        write_section(DEFAULT_RESULTS, report)
    return status


if __name__ == "__main__":
    sys.exit(main())
