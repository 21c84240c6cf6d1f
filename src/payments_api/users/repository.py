from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal
from payments_api.db import RawStatement, attach_instance, detached_instance, driver_connection
from payments_api.users.models import User

USER_COLUMNS: tuple[str, ...] = tuple(column.key for column in User.__table__.columns)
# Every authenticated request reads its user row: one statement compiled once and run on
# the session's asyncpg connection (measured in bench/: the ORM select was 11-15% of a
# settlement's CPU, three requests each).
SELECT_USER = RawStatement.of(
    text(f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE id = :id")  # noqa: S608
)


_ADOPTED = "payments_api.users.adopted"


def matches_principal(roles: list[str], email: str | None, principal: Principal) -> bool:
    """The stored roles and email are what the token says (no refresh needed)."""
    return roles == sorted(principal.roles) and email == principal.email


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: str, *, for_update: bool = False) -> User | None:
        stmt = select(User).where(User.id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        result: User | None = await self.session.scalar(stmt)
        return result

    def adopt(self, values: dict[str, Any]) -> User:
        """Make a user row read by another statement of this session's transaction (the
        Idempotency-Key claim reads the caller's) the session's persistent ``User``:
        reading that user later in the transaction needs no statement."""
        user = attach_instance(self.session, detached_instance(User, values.items()))
        # The identity map holds unmodified instances weakly: kept alive for the session.
        self.session.info[_ADOPTED] = user
        return user

    async def _current(self, user_id: str) -> User | None:
        """The user row as the session's persistent ``User`` (raw statement, no ORM load).
        An instance the session holds already is returned as it is, as an ORM select
        would."""
        held: User | None = self.session.sync_session.identity_map.get(
            User.__mapper__.identity_key_from_primary_key((user_id,))
        )
        if held is not None:
            return held
        driver = await driver_connection(self.session)
        row = await driver.fetchrow(SELECT_USER.sql, *SELECT_USER.args({"id": user_id}))
        if row is None:
            return None
        user = detached_instance(User, zip(USER_COLUMNS, row, strict=True))
        return attach_instance(self.session, user)

    async def upsert_from_principal(self, principal: Principal) -> User:
        """Create the user on first sight; refresh roles and email when they changed.

        The conditional DO UPDATE keeps the common request (nothing changed) free of
        row writes.
        """
        roles = sorted(principal.roles)
        existing = await self._current(principal.sub)
        if existing is not None and matches_principal(existing.roles, existing.email, principal):
            # The common case writes nothing and takes no row lock, so a request that
            # later updates its own user row from another transaction cannot block.
            return existing
        stmt = (
            insert(User)
            .values(id=principal.sub, roles=roles, email=principal.email)
            .on_conflict_do_update(
                index_elements=[User.id],
                set_={"roles": roles, "email": principal.email, "updated_at": func.now()},
                where=(User.roles.is_distinct_from(roles))
                | (User.email.is_distinct_from(principal.email)),
            )
            .returning(User)
            .execution_options(populate_existing=True)
        )
        user = await self.session.scalar(stmt)
        if user is None:
            user = await self.get(principal.sub)
        if user is None:  # the row exists: the insert conflicted on it
            raise RuntimeError(f"user {principal.sub} vanished during upsert")
        return user
