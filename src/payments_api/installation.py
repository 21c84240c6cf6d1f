"""This database's identity, and the outgoing Stripe idempotency keys derived from it.

Outgoing keys used to be built from row ids alone (``withdrawal:11``). A second database
on the same Stripe account -- a recreated development database, a staging copy, a
restored backup -- sends ``withdrawal:11`` again, and Stripe either refuses it (the key
was used with other parameters: the withdrawal fails for no reason) or, when the
parameters happen to match, replays the *other* database's object. Every database now
gets a random namespace, made once by its first migration to carry this table, and every
outgoing key is ``<namespace>:<op>:<id>``.

Rows that were already in flight when the namespace appeared keep their old key, so a
retry after the upgrade still reaches the object Stripe made for them: the migration
records, per operation, the highest row id that existed (``legacy_ceilings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, String, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base


class Installation(Base):
    """One row: this database's outgoing-key namespace."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("singleton", name="singleton"),)

    singleton: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    namespace: Mapped[str] = mapped_column(String(32))
    legacy_ceilings: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


@dataclass(frozen=True, slots=True)
class OutgoingKeys:
    """Derives the idempotency key of an outgoing Stripe write from our record."""

    namespace: str
    legacy_ceilings: dict[str, int] = field(default_factory=dict)

    def derive(self, operation: str, record_id: int | str) -> str:
        """``<namespace>:<operation>:<record id>``; a row that existed before the
        namespace (id at or below its operation's ceiling) keeps ``<operation>:<id>``."""
        ceiling = self.legacy_ceilings.get(operation)
        if isinstance(record_id, int) and ceiling is not None and record_id <= ceiling:
            return f"{operation}:{record_id}"
        return f"{self.namespace}:{operation}:{record_id}"


_CACHE: dict[str, OutgoingKeys] = {}


def _database_of(bind: Any) -> str:
    engine = getattr(bind, "engine", bind)
    return str(engine.url)


async def outgoing_keys(source: AsyncSession | async_sessionmaker[AsyncSession]) -> OutgoingKeys:
    """This database's key deriver (read once per database per process: it never
    changes)."""
    if isinstance(source, AsyncSession):
        database = _database_of(source.bind)
        cached = _CACHE.get(database)
        if cached is not None:
            return cached
        row = (await source.execute(select(Installation))).scalar_one()
    else:
        database = _database_of(source.kw.get("bind"))
        cached = _CACHE.get(database)
        if cached is not None:
            return cached
        async with source() as session:
            row = (await session.execute(select(Installation))).scalar_one()
    keys = OutgoingKeys(
        namespace=row.namespace,
        legacy_ceilings={k: int(v) for k, v in (row.legacy_ceilings or {}).items()},
    )
    _CACHE[database] = keys
    return keys
