"""The audit log: who did what to what, with the state before and after (append-only).

Every flow that changes something on someone's behalf writes here (admin actions,
dispute freezes, refunds, reconciliation runs, webhook replays, payout-account changes)
through ``repository.AuditLogRepository.record``; admins read it at
``GET /api/v1/admin/audit-log`` (``router.py``, ``service.audit_log_page``). It is its own
room, model to route, so that no flow has to import the admin package to be audited.
"""
