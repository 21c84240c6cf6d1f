"""Alembic environment: async (asyncpg), PostgreSQL only, URL from the caller or settings."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from payments_api.db import resolve_database_url, to_asyncpg_url
from payments_api.models import Base
from payments_api.settings import get_settings

# The sandbox's tables live in every database (a deployment may start without a Stripe
# key), but the product's models never import the sandbox: alembic names it here.
from payments_sandbox import models as sandbox_models  # noqa: F401

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return to_asyncpg_url(url)
    return resolve_database_url(get_settings())


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # pgqueuer owns its tables (installed by `payments-api migrate` through the
    # library's own installer); alembic must neither create nor drop them.
    return not (type_ == "table" and name is not None and name.startswith("pgqueuer"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        compare_type=True,
        compare_server_default=False,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
