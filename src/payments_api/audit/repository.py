from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry


class AuditLogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        *,
        actor_id: str,
        action: str,
        target_type: str,
        target_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        reason: str | None,
        request_id: str | None,
    ) -> AuditLogEntry:
        entry = AuditLogEntry(
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            before=before,
            after=after,
            reason=reason,
            request_id=request_id,
        )
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def page(
        self, *, limit: int, before_id: int | None, filters: dict[str, str | None] | None = None
    ) -> list[AuditLogEntry]:
        """Newest first; ``filters`` match columns exactly (actor_id, action, target_type,
        target_id), None meaning any."""
        stmt = select(AuditLogEntry).order_by(AuditLogEntry.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(AuditLogEntry.id < before_id)
        for column, value in (filters or {}).items():
            if value is not None:
                stmt = stmt.where(getattr(AuditLogEntry, column) == value)
        return list((await self.session.scalars(stmt)).all())
