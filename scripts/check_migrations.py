"""CI check: migrations apply to an empty database, match the models, and roll back.

Uses the same PostgreSQL the tests use (TEST_DATABASE_URL, else 127.0.0.1:5432, else an
embedded pgserver) with a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.db_setup import _recreate, admin_url  # noqa: E402


def main() -> None:
    admin = admin_url()
    asyncio.run(_recreate(admin, "payments_migration_check"))
    url = make_url(admin).set(database="payments_migration_check").render_as_string(False)
    env = {**os.environ, "PAYMENTS_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic"]
    for step in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        print("alembic", *step, flush=True)  # noqa: T201
        subprocess.run([*alembic, *step], cwd=REPO, env=env, check=True)  # noqa: S603
    # alembic check again with the job queue's tables present: they must be ignored.
    from payments_api.jobs.queue import install_queue_schema

    asyncio.run(install_queue_schema(url))
    subprocess.run([*alembic, "check"], cwd=REPO, env=env, check=True)  # noqa: S603


if __name__ == "__main__":
    main()
