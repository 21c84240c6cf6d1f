"""CI check: migrations apply to an empty database, match the models, and roll back.

Uses the same PostgreSQL the tests use (TEST_DATABASE_URL, else 127.0.0.1:5432, else an
embedded pgserver) with a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from payments_api.db import asyncpg_dsn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from tests.db_setup import _recreate, admin_url  # noqa: E402


def main() -> None:
    admin = admin_url()
    # A name of its own per run, dropped afterwards even on failure: two runs on one
    # server (two CI clones, a developer beside CI) never share or leave a database.
    name = f"payments_migration_check_{uuid.uuid4().hex[:12]}"
    asyncio.run(_recreate(admin, name))
    try:
        url = make_url(admin).set(database=name).render_as_string(False)
        env = {**os.environ, "PAYMENTS_DATABASE_URL": url}
        alembic = [sys.executable, "-m", "alembic"]
        for step in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
            print("alembic", *step, flush=True)  # noqa: T201
            subprocess.run([*alembic, *step], cwd=REPO, env=env, check=True)  # noqa: S603
        # alembic check again with the job queue's tables present: they must be ignored.
        from payments_api.jobs.queue import install_queue_schema

        asyncio.run(install_queue_schema(url))
        subprocess.run([*alembic, "check"], cwd=REPO, env=env, check=True)  # noqa: S603
    finally:
        asyncio.run(_drop(admin, name))


async def _drop(admin: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


if __name__ == "__main__":
    main()
