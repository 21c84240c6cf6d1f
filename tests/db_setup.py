"""Where the test suite's PostgreSQL comes from.

``TEST_DATABASE_URL`` if set; otherwise the server on 127.0.0.1:5432 if it answers;
otherwise a private server started through pgserver. Each xdist worker gets its own
database, built by running the alembic migrations (never ``create_all``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from payments_api.db import asyncpg_dsn, to_asyncpg_url
from payments_api.migrations import alembic_config

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def admin_url() -> str:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    if _reachable("127.0.0.1", 5432):
        return LOCAL_SERVER
    import pgserver

    data_dir = Path(tempfile.gettempdir()) / "payments-api-test-pg"
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(server.get_uri())


async def _recreate(admin: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def create_test_database() -> str:
    """A fresh database for this worker, migrated to head; returns its asyncpg URL."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # The checkout's path is in the name so two checkouts (a CI clone beside a working
    # tree) never share a database on the same server.
    checkout = hashlib.sha256(str(Path(__file__).resolve()).encode()).hexdigest()[:8]
    return create_named_database(f"payments_test_{checkout}_{worker}")


def create_named_database(name: str) -> str:
    """A fresh database called ``name``, migrated to head; returns its asyncpg URL."""
    admin = admin_url()
    asyncio.run(_recreate(admin, name))
    url = to_asyncpg_url(make_url(admin).set(database=name).render_as_string(False))
    config = alembic_config(url)
    config.attributes["configure_logger"] = False
    from alembic import command

    command.upgrade(config, "head")
    from payments_api.jobs.queue import install_queue_schema

    asyncio.run(install_queue_schema(asyncpg_dsn(url)))
    return url


def drop_test_database(url: str) -> None:
    """Drop a database made by :func:`create_test_database` (the session is over)."""
    name = make_url(url).database

    async def drop() -> None:
        connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())
