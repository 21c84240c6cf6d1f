"""Engine, sessions and the embedded PostgreSQL.

One dialect everywhere: PostgreSQL through asyncpg. With no ``PAYMENTS_DATABASE_URL`` a
private server is started from the ``pgserver`` wheel, so a fresh machine needs nothing
but Python.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import DateTime, MetaData, TextClause, func
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    configure_mappers,
    make_transient_to_detached,
    mapped_column,
)
from sqlalchemy.orm.attributes import instance_dict, manager_of_class, set_committed_value
from sqlalchemy.util.concurrency import greenlet_spawn

from payments_api.settings import Settings

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "ck": "%(table_name)s_%(constraint_name)s_check",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}  # noqa: RUF012


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    """When the row was first written (database clock)."""


def to_asyncpg_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the asyncpg dialect; refuse other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"only PostgreSQL is supported, got {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg itself takes (pgqueuer's pool and schema, admin connections) for a
    SQLAlchemy URL of any PostgreSQL driver."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the private PostgreSQL in ``data_dir`` and return its URL.

    pgserver keeps one server per data folder and stops it when the last process
    using it exits.
    """
    import pgserver

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log.warning("PAYMENTS_DATABASE_URL is not set: using embedded PostgreSQL in %s", data_dir)
    _forget_dead_handles(data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    return to_asyncpg_url(str(server.get_uri()))


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that no longer exist from pgserver's list of users of the server.

    pgserver stops the server when the last process on that list exits, but a process
    killed without running its exit hooks (kill -9, a crash) stays listed for ever, and
    from then on nobody is ever "last": the server outlived every later service.
    """
    from pgserver.postgres_server import PostgresServer

    handles = data_dir / ".handle_pids.json"
    # Under pgserver's own inter-process lock: a process registering itself meanwhile
    # must not be dropped by this rewrite (it would then never count as a user).
    with PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return to_asyncpg_url(settings.database_url.get_secret_value())
    return start_embedded_postgres(settings.data_dir)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "payments-api"}}
    if settings.db_statement_timeout_ms:
        connect_args["server_settings"]["statement_timeout"] = str(settings.db_statement_timeout_ms)
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # Off by default: measured in bench/, the ping doubled the round trips of a short
        # transaction; SQLAlchemy still invalidates a connection that fails and recycling
        # bounds its age.
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=settings.db_pool_recycle_seconds,
        connect_args=connect_args,
        # Tracebacks and SQLAlchemy's errors name the statement, never its parameters:
        # those are user data (references, emails, amounts).
        hide_parameters=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, rolled back on any exception."""
    async with sessionmaker.begin() as session:
        yield session


# --- raw statements on the session's own asyncpg connection -----------------------
# The hottest paths (ledger posts, balance reads, idempotency keys) skip SQLAlchemy's
# per-statement work (cache keys, compilation lookup, result wrapping): measured in
# bench/, it was most of the client-side CPU of those requests. Statements are
# compiled once, at import, by SQLAlchemy's own asyncpg dialect.

_ASYNCPG = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class RawStatement:
    """A statement compiled for asyncpg: ``$n`` placeholders and their names in order."""

    sql: str
    params: tuple[str, ...]

    @classmethod
    def of(cls, clause: TextClause) -> RawStatement:
        compiled = clause.compile(dialect=_ASYNCPG)
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.params]


@dataclass(frozen=True, slots=True)
class Rider:
    """A write that rides another statement as a data-modifying common table expression
    (``name AS (INSERT ...)``), instead of a round trip of its own. ``sql`` names its
    parameters with a prefix of its own (they share the carrier's namespace) and may
    read what the carrier documents (the ledger's ``posted_transaction``: one row, the
    transaction's ``id``, when it posted; none when it wrote nothing, and then a rider
    must write nothing either: it selects from it); it returns nothing to the carrier.
    Same transaction, same outcome as a statement of its own sent right after the
    carrier."""

    sql: str
    values: dict[str, Any]
    on_written: Callable[[], None] | None = None
    """Called once the carrier ran (the rider's write is in the transaction); the
    carrier calls :func:`riders_written` after its statement."""


def riders_written(riders: Iterable[Rider]) -> None:
    """Tell ``riders`` their carrier statement ran."""
    for rider in riders:
        if rider.on_written is not None:
            rider.on_written()


async def driver_connection(session: AsyncSession, *, begin: bool = True) -> Any:
    """The asyncpg connection under ``session`` (same transaction, same savepoints).

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement it runs
    itself. ``begin=True`` sends it here the same way when nothing ran yet, so raw
    statements join the session's transaction. ``begin=False`` leaves a fresh session
    in autocommit: right for a read that is one statement (a statement is its own
    consistent snapshot), and it saves the BEGIN and COMMIT round trips.
    """
    raw = await _pooled_connection(session)
    adapted = raw.dbapi_connection
    if begin and getattr(adapted, "_transaction", True) is None:
        await adapted._start_transaction()
    driver = raw.driver_connection
    if begin and (driver is None or not driver.is_in_transaction()):  # pragma: no cover
        connection = await session.connection()
        await connection.exec_driver_sql("SELECT 1")
        driver = raw.driver_connection
    return driver


@asynccontextmanager
async def read_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    """An asyncpg connection from the pool, for reads of one statement each (every
    statement its own snapshot: no BEGIN, no COMMIT), with no ORM session around it.

    Opening a session and its transaction for a read cost twice the CPU of checking a
    connection out of the pool (bench/readpath.py); the balance read is one statement.
    The connection is the engine pool's own (same limits, recycling and pre-ping), back
    in the pool when the block ends. A sessionmaker bound to one connection (the test
    suite's, inside its outer transaction) reads on that connection, so a read sees what
    the test wrote.
    """
    bind = sessionmaker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        async with sessionmaker() as session:
            yield await driver_connection(session, begin=False)
        return
    pooled = await bind.raw_connection()
    try:
        yield pooled.driver_connection
    except BaseException as exc:
        # An error the server answered leaves the connection usable; anything else (a
        # lost connection, a read cancelled mid-protocol) may not: it is replaced.
        driver = pooled.driver_connection
        if isinstance(exc, asyncpg.PostgresError) and driver is not None and not driver.is_closed():
            await greenlet_spawn(pooled.close)
        else:
            await greenlet_spawn(pooled.invalidate, exc)
        raise
    # Back to the pool; its reset is a no-op, as no transaction was begun.
    await greenlet_spawn(pooled.close)


_POOLED_CONNECTION = "payments_api.pooled_connection"


async def _pooled_connection(session: AsyncSession) -> Any:
    """The pool's connection under the session's transaction, looked up once per
    transaction: ``session.connection()`` builds async proxies on every call, which was
    a tenth of a settlement's CPU with a raw statement per step (bench/RESULTS.md). The
    session holds one connection for the whole of a transaction, so the lookup is kept
    with the innermost transaction and made again once another one is current. (A
    savepoint is another transaction: SQLAlchemy emits its SAVEPOINT when its
    connection is first asked for, so that must still go through ``session.connection``.)
    """
    sync_session = session.sync_session

    def innermost() -> Any:
        return sync_session.get_nested_transaction() or sync_session.get_transaction()

    transaction = innermost()
    cached = session.info.get(_POOLED_CONNECTION)
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cached[1]
    connection = await session.connection()  # begins the transaction when none is
    raw = await connection.get_raw_connection()
    session.info[_POOLED_CONNECTION] = (innermost(), raw)
    return raw


ModelT = TypeVar("ModelT", bound=Base)


def detached_instance(model: type[ModelT], values: Iterable[tuple[str, Any]]) -> ModelT:
    """A ``model`` instance holding a row a raw statement returned, in no session. The
    attributes are set as loaded values (no change history), as the ORM's loading does;
    ``values`` must hold every column."""
    if not model.__mapper__.configured:
        # Checked first: the call, a no-op once the models are configured, still walks
        # every registry under a lock, and this runs for every row a request reads.
        configure_mappers()
    instance: ModelT = manager_of_class(model).new_instance()
    instance_dict(instance).update(values)
    make_transient_to_detached(instance)
    return instance


async def autoflush(session: AsyncSession) -> None:
    """What the ORM does before a query of its own: write the session's pending changes,
    so a raw statement sees them (and a row it reads cannot overwrite them, see
    ``attach_instance``). Nothing to do, and no cost, when nothing is pending."""
    sync_session = session.sync_session
    if sync_session.new or sync_session.dirty or sync_session.deleted:
        await session.flush()


def attach_instance(session: AsyncSession, instance: ModelT) -> ModelT:
    """Make a detached instance the session's persistent one (no SQL). When the session
    holds that row already, its instance is refreshed with these values and returned
    instead, as a ``populate_existing`` load would."""
    mapper = type(instance).__mapper__
    identity = session.sync_session.identity_map.get(mapper.identity_key_from_instance(instance))
    if identity is None:
        session.add(instance)
        return instance
    current: ModelT = identity
    for name, value in instance_dict(instance).items():
        if not name.startswith("_"):
            set_committed_value(current, name, value)
    return current
