"""The audit log: who did what to what, with the state before and after (append-only).

Every flow that changes something on someone's behalf writes here (admin actions,
dispute freezes, refunds, reconciliation runs, webhook replays); the admin API reads it.
It is its own room so that no flow has to import the admin package to be audited.
"""
