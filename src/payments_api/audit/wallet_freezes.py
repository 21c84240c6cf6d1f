"""Freezing and unfreezing a wallet, always with its audit log entry: admins, disputes
and forced refunds freeze for their own reasons, and each change is recorded the same
way (``wallet.freeze`` / ``wallet.unfreeze``, the flags before and after)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.repository import AuditLogRepository
from payments_api.users.models import User


async def set_wallet_frozen(
    session: AsyncSession,
    user: User,
    *,
    frozen: bool,
    frozen_reason: str | None = None,
    actor_id: str,
    reason: str | None,
    request_id: str | None,
    now: datetime | None = None,
) -> None:
    """Freeze ``user``'s wallet (``frozen_reason`` says why, on the user row) or unfreeze
    it, and record the change in the audit log (``reason``: why, in the log). The caller
    holds the user row locked and decided the change is due; ``now``, when given, is
    the row's ``updated_at``."""
    before = {"frozen": user.frozen, "frozen_reason": user.frozen_reason}
    user.frozen = frozen
    user.frozen_reason = frozen_reason if frozen else None
    if now is not None:
        user.updated_at = now
    await session.flush()
    await AuditLogRepository(session).record(
        actor_id=actor_id,
        action="wallet.freeze" if frozen else "wallet.unfreeze",
        target_type="user",
        target_id=user.id,
        before=before,
        after={"frozen": user.frozen, "frozen_reason": user.frozen_reason},
        reason=reason,
        request_id=request_id,
    )
