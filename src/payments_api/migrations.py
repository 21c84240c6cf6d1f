"""Running and inspecting the alembic migrations from code (CLI, embedded start, /readyz)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str | None = None) -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.exists():  # running from an unpacked checkout in the working directory
        ini = Path.cwd() / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "alembic"))
    if database_url is not None:
        # `%` would be read as interpolation by configparser.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


async def current_revisions(connection: AsyncConnection) -> set[str]:
    exists = await connection.scalar(text("SELECT to_regclass('public.alembic_version')"))
    if exists is None:
        return set()
    rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
    return {row[0] for row in rows}
