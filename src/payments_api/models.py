"""Every table's model, imported in one place so alembic sees the whole schema."""

from payments_api.admin.models import AuditLogEntry
from payments_api.db import Base
from payments_api.ledger.models import (
    LedgerAccount,
    LedgerBalance,
    LedgerPosting,
    LedgerTransaction,
)
from payments_api.users.models import User

__all__ = [
    "AuditLogEntry",
    "Base",
    "LedgerAccount",
    "LedgerBalance",
    "LedgerPosting",
    "LedgerTransaction",
    "User",
]
