"""Events about one row that its owner hears of: a saved card, a withdrawal, a
subscription. The change key names the row and the step, so each step of a row is told
once however often it is reached again (a redelivered Stripe event, a retried request)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType


class OwnedRow(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def user_id(self) -> str: ...


async def tell_owner(
    session: AsyncSession,
    type: EventType,
    subject: BaseModel,
    row: OwnedRow,
    *,
    kind: str,
    step: str | None = None,
) -> None:
    """``subject`` as the event ``type`` for ``row``'s user, under the change key
    ``<kind>:<row id>:<step>``; ``step`` is by default the part of ``type`` after its dot
    (``paid`` of ``withdrawal.paid``)."""
    await emit(
        session,
        type,
        subject,
        change_key=f"{kind}:{row.id}:{type.value.partition('.')[2] if step is None else step}",
        user_ids=[row.user_id],
    )
