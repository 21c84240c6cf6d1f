"""``audit.wallet_freezes.set_wallet_frozen``: the flags change and the audit log says
so, before and after."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry
from payments_api.audit.wallet_freezes import set_wallet_frozen
from tests.factories import create_user


async def test_a_freeze_then_an_unfreeze_are_both_in_the_audit_log(session: AsyncSession) -> None:
    user = await create_user(session)
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await set_wallet_frozen(
        session,
        user,
        frozen=True,
        frozen_reason="dispute:dp_1",
        actor_id="system:stripe",
        reason="Card dispute dp_1 opened",
        request_id=None,
        now=stamp,
    )
    assert (user.frozen, user.frozen_reason, user.updated_at) == (True, "dispute:dp_1", stamp)
    await set_wallet_frozen(
        session,
        user,
        frozen=False,
        frozen_reason="ignored when unfreezing",
        actor_id="admin-1",
        reason=None,
        request_id="req_1",
    )
    assert (user.frozen, user.frozen_reason) == (False, None)
    entries = (
        await session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.target_id == user.id)
            .order_by(AuditLogEntry.id)
        )
    ).all()
    assert [(e.action, e.actor_id, e.before, e.after, e.reason, e.request_id) for e in entries] == [
        (
            "wallet.freeze",
            "system:stripe",
            {"frozen": False, "frozen_reason": None},
            {"frozen": True, "frozen_reason": "dispute:dp_1"},
            "Card dispute dp_1 opened",
            None,
        ),
        (
            "wallet.unfreeze",
            "admin-1",
            {"frozen": True, "frozen_reason": "dispute:dp_1"},
            {"frozen": False, "frozen_reason": None},
            None,
            "req_1",
        ),
    ]
