"""The audit log as admins read it: newest first, filtered, paged by entry id."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry
from payments_api.audit.repository import AuditLogRepository
from payments_api.audit.schemas import AuditLogEntryRead, AuditLogList
from payments_api.kit.pagination import parse_cursor, public_id
from payments_api.kit.reads import read_of

AUDIT_PREFIX = "aud"


def audit_entry_read(row: AuditLogEntry) -> AuditLogEntryRead:
    return read_of(AuditLogEntryRead, row, id=public_id(AUDIT_PREFIX, row.id))


async def audit_log_page(
    session: AsyncSession,
    *,
    limit: int,
    starting_after: str | None,
    filters: dict[str, str | None] | None = None,
) -> AuditLogList:
    rows = await AuditLogRepository(session).page(
        limit=limit + 1,
        before_id=parse_cursor(AUDIT_PREFIX, starting_after),
        filters=filters,
    )
    return AuditLogList(
        data=[audit_entry_read(row) for row in rows[:limit]],
        has_more=len(rows) > limit,
    )
