"""The escrows table.

The writes of the settlement path (creating an escrow, accepting, completing) are
hand-written statements compiled once at import and run on the session's asyncpg
connection, in its transaction, like the ledger's: measured in ``bench/``, an ORM insert
with RETURNING, a ``SELECT ... FOR UPDATE`` load and a unit-of-work flush per request
cost more client CPU than the database spent on them. The rows they return become
ordinary persistent ``Escrow`` instances of the session (see :meth:`attach`), so callers
and later ORM reads in the same session see one coherent object.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.dialects import postgresql

from payments_api.db import RawStatement, attach_instance, detached_instance, driver_connection
from payments_api.escrow.models import Escrow, EscrowStatus
from payments_api.kit.row_repository import RowRepository

COLUMNS: tuple[str, ...] = tuple(column.key for column in Escrow.__table__.columns)
_RETURNING = ", ".join(COLUMNS)

# What ``EscrowService.create`` writes; the other columns start NULL or at their default.
INSERT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "payee_id",
    "status",
    "funding",
    "currency",
    "price_amount",
    "platform_fee_bps",
    "service_fee_bps",
    "platform_fee_amount",
    "service_fee_amount",
    "payee_amount",
    "hold_amount",
    "keeps_platform_fee_on_cancel",
    "reference",
    "project_id",
    "session_id",
    "description",
    "creation_key",
    "creation_fingerprint",
    "funded_at",
    "capture_method",
)

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _typed(name: str) -> str:
    # INSERT ... SELECT does not type its parameters from the target columns as VALUES
    # does: each is cast to its column's type, without a length (an explicit cast to
    # varchar(n) would truncate silently; the assignment to the column still refuses
    # an over-long value, as before).
    type_ = re.sub(r"\(\d+\)", "", Escrow.__table__.c[name].type.compile(dialect=_PG))
    return f"CAST(:{name} AS {type_})"


# Only for an existing user holding the payee role, checked in the same statement (the
# service tells the reasons for no row apart, on that rare path).
INSERT = RawStatement.of(
    text(
        f"""
        INSERT INTO escrows ({", ".join(INSERT_COLUMNS)})
        SELECT {", ".join(_typed(name) for name in INSERT_COLUMNS)}
        WHERE EXISTS (
            SELECT FROM users
            WHERE users.id = CAST(:payee_id AS varchar) AND 'payee' = ANY(users.roles)
        )
        ON CONFLICT (customer_id, creation_key) DO NOTHING
        RETURNING {_RETURNING}
        """  # noqa: S608 - constants only
    )
)

# A transition in one statement: the status condition and who may ask are checked
# under the row lock the UPDATE takes, so of concurrent transitions of one escrow
# exactly one matches (the others wait for it, re-check the new row and match nothing).
# Each is exactly the slow path's success condition for its action (the party check
# implies visibility); anything else matches nothing and goes the locked, explaining
# way (``EscrowService._transition``).
ACCEPT = RawStatement.of(
    text(
        f"""
        UPDATE escrows
        SET status = '{EscrowStatus.accepted.value}', accepted_at = :now, updated_at = :now
        WHERE id = :id AND status = '{EscrowStatus.created.value}' AND payee_id = :actor
        RETURNING {_RETURNING}
        """  # noqa: S608 - constants only
    )
)

# Never the payee, even one who is also an admin: nobody settles their own job.
COMPLETE = RawStatement.of(
    text(
        f"""
        UPDATE escrows
        SET status = '{EscrowStatus.completed.value}', completed_at = :now,
            completed_by = :actor, updated_at = :now
        WHERE id = :id AND status = '{EscrowStatus.accepted.value}' AND payee_id <> :actor
          AND (customer_id = :actor OR CAST(:admin AS boolean))
        RETURNING {_RETURNING}
        """  # noqa: S608 - constants only
    )
)


class EscrowRepository(RowRepository[Escrow]):
    """Every transition first loads its escrow with ``get(..., for_update=True)``: that
    lock makes concurrent transitions of one escrow run one after the other, each seeing
    the previous one's status."""

    model = Escrow

    async def insert(self, values: dict[str, Any]) -> Escrow | None:
        """Insert an escrow; None when the payee is not a user with the payee role, or
        the customer already used this creation key."""
        driver = await driver_connection(self.session)
        row = await driver.fetchrow(INSERT.sql, *INSERT.args(values))
        return None if row is None else self.attach(self.detached(row))

    async def accept(self, escrow_id: int, *, actor_id: str, now: datetime) -> Escrow | None:
        """``created`` -> ``accepted`` by its payee; None (nothing written) otherwise.
        The escrow is not attached to the session: see :meth:`attach`."""
        driver = await driver_connection(self.session)
        row = await driver.fetchrow(
            ACCEPT.sql, *ACCEPT.args({"id": escrow_id, "actor": actor_id, "now": now})
        )
        return None if row is None else self.detached(row)

    async def complete(
        self, escrow_id: int, *, actor_id: str, admin: bool, now: datetime
    ) -> Escrow | None:
        """``accepted`` -> ``completed`` by its customer or an admin who is not its
        payee; None (nothing written) otherwise. Not attached: see :meth:`attach`."""
        driver = await driver_connection(self.session)
        row = await driver.fetchrow(
            COMPLETE.sql,
            *COMPLETE.args({"id": escrow_id, "actor": actor_id, "admin": admin, "now": now}),
        )
        return None if row is None else self.detached(row)

    @staticmethod
    def detached(row: Any) -> Escrow:
        """An ``Escrow`` holding a row's values, in no session (see ``detached_instance``)."""
        return detached_instance(Escrow, zip(COLUMNS, row, strict=True))

    def attach(self, escrow: Escrow) -> Escrow:
        """Make a detached escrow the session's persistent one (see ``attach_instance``)."""
        return attach_instance(self.session, escrow)

    async def get_by_creation_key(self, customer_id: str, creation_key: str) -> Escrow | None:
        return await self.one(
            select(Escrow).where(
                Escrow.customer_id == customer_id, Escrow.creation_key == creation_key
            ),
            fresh=False,
        )

    async def page(
        self,
        user_id: str,
        *,
        role: str | None,
        status: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[Escrow]:
        """The user's escrows (as customer, payee or both), newest first."""
        if role == "customer":
            party = Escrow.customer_id == user_id
        elif role == "payee":
            party = Escrow.payee_id == user_id
        else:
            party = or_(Escrow.customer_id == user_id, Escrow.payee_id == user_id)
        conditions = [party]
        if status is not None:
            conditions.append(Escrow.status == status)
        return await self.newest_first(*conditions, limit=limit, before_id=before_id)
