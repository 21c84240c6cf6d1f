"""The real service, as `payments-api serve` runs it, for tests that drive a browser.

Unlike the rest of the suite (the app in-process, Stripe and webhooks routed back with
respx), here everything crosses real sockets: Chromium loads the sandbox's hosted page
from a uvicorn process, the page's form POST commits in that process, its background
deliverer POSTs the signed events to the service's own webhook routes, and the test
reads the balance over HTTP. The service gets a fresh database of its own on the test
suite's PostgreSQL server, migrated by `serve --migrate`, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from payments_api.db import asyncpg_dsn, to_asyncpg_url
from tests.db_setup import _recreate, admin_url

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet: without the background-networking switches Chromium keeps
# trying to reach Google's services, which the closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
JWT_SECRET = "browser-test-jwt-secret-0123456789abcdef-0123"
START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Service:
    base_url: str
    jwt_secret: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium. In CI (``CI=true``) a missing browser fails the run loudly,
    because CI installs it; on a developer's machine the browser tests are skipped with
    one line saying how to get it (it needs root and ~110 MB)."""
    if not os.access(CHROMIUM, os.X_OK):
        message = (
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            "Install it with `bash scripts/install_browser.sh` (as root), then rerun."
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _database_name() -> str:
    # Per checkout and per xdist worker, as tests/db_setup.py names its databases.
    checkout = hashlib.sha256(str(Path(__file__).resolve()).encode()).hexdigest()[:8]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"payments_browser_{checkout}_{worker}"


@pytest.fixture
def service_log(tmp_path: Path) -> Iterator[IO[bytes]]:
    with (tmp_path / "service.log").open("wb") as log:
        yield log


@pytest.fixture
async def service(tmp_path: Path, service_log: IO[bytes]) -> AsyncIterator[Service]:
    """`payments-api serve --migrate` in sandbox mode (no Stripe key) on a free port."""
    admin = admin_url()
    name = _database_name()
    await _recreate(admin, name)
    database_url = to_asyncpg_url(make_url(admin).set(database=name).render_as_string(False))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    # Only this service's settings: nothing PAYMENTS_* from the caller's environment
    # (a Stripe key there would switch the sandbox off), and no .env (cwd is tmp_path).
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYMENTS_")}
    env.update(
        PAYMENTS_ENVIRONMENT="development",
        PAYMENTS_DATABASE_URL=database_url,
        PAYMENTS_HOST="127.0.0.1",
        PAYMENTS_PORT=str(port),
        PAYMENTS_WORKERS="1",
        PAYMENTS_PUBLIC_BASE_URL=base_url,
        PAYMENTS_JWT_SECRET=JWT_SECRET,
        PAYMENTS_LOG_JSON="false",
    )
    cli = Path(sys.executable).with_name("payments-api")
    process = await asyncio.create_subprocess_exec(
        str(cli),
        "serve",
        "--migrate",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=service_log,
        stderr=service_log,
    )
    running = Service(base_url, JWT_SECRET, tmp_path / "service.log")
    try:
        await _wait_ready(process, running)
        yield running
    finally:
        await _stop(process)
        await _drop(admin, name)


async def _wait_ready(process: asyncio.subprocess.Process, service: Service) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=service.base_url, trust_env=False) as client:
        while True:
            if process.returncode is not None:
                pytest.fail(
                    f"payments-api serve exited ({process.returncode}):\n{service.log_tail()}"
                )
            try:
                response = await client.get("/readyz", timeout=2.0)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"payments-api serve not ready in time:\n{service.log_tail()}")
            await asyncio.sleep(0.2)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _drop(admin: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
