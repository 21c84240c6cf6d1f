"""A database of its own for scripts/schemathesis_ci.sh: create it, check the ledger
invariants on it after the run, drop it.

On the PostgreSQL the tests use (TEST_DATABASE_URL, else 127.0.0.1:5432), like
scripts/check_migrations.py. With neither, ``create`` prints nothing and the service
runs its embedded PostgreSQL in the script's temporary folder instead (removed with it).

    python scripts/fuzz_database.py create NAME   # prints the database's URL, or nothing
    python scripts/fuzz_database.py ledger        # the service's database (PAYMENTS_*);
                                                  # exit 1 when an invariant is broken
    python scripts/fuzz_database.py drop URL
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.db_setup import _reachable, _recreate, admin_url  # noqa: E402


async def _drop(name: str) -> None:
    import asyncpg

    from payments_api.db import asyncpg_dsn

    connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _ledger() -> list[str]:
    """The suite's own ledger invariants (tests/factories.py), plus how much the run
    wrote, so an empty ledger is not mistaken for a consistent one."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from tests.factories import ledger_invariants

    from payments_api.db import resolve_database_url
    from payments_api.settings import get_settings

    engine = create_async_engine(resolve_database_url(get_settings()))
    try:
        async with AsyncSession(engine) as session:
            broken = await ledger_invariants(session)
            transactions = await session.scalar(text("SELECT count(*) FROM ledger_transactions"))
            print(f"fuzz_database: {transactions} ledger transactions checked")  # noqa: T201
            return broken
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    if argv == ["ledger"]:
        broken = asyncio.run(_ledger())
        for problem in broken:
            print(f"fuzz_database: ledger invariant broken: {problem}", file=sys.stderr)  # noqa: T201
        return 1 if broken else 0
    if len(argv) != 2 or argv[0] not in {"create", "drop"}:
        print(__doc__, file=sys.stderr)  # noqa: T201
        return 2
    command, arg = argv
    if command == "create":
        if not os.environ.get("TEST_DATABASE_URL") and not _reachable("127.0.0.1", 5432):
            return 0
        admin = admin_url()
        asyncio.run(_recreate(admin, arg))
        print(make_url(admin).set(database=arg).render_as_string(False))  # noqa: T201
        return 0
    asyncio.run(_drop(make_url(arg).database or ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
