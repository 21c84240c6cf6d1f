from __future__ import annotations

from payments_api.problems import ProblemError


class ReconciliationError(ProblemError):
    status = 409
    code = "reconciliation_error"
    title = "Reconciliation error"


class ReconciliationRunNotFound(ReconciliationError):
    status = 404
    code = "reconciliation_run_not_found"
    title = "No such reconciliation run"


class ReconciliationInProgress(ReconciliationError):
    status = 409
    code = "reconciliation_in_progress"
    title = "This day is being reconciled right now"


class ReconciliationDateInFuture(ReconciliationError):
    status = 422
    code = "reconciliation_date_in_future"
    title = "A day that has not started cannot be reconciled"


class ReconciliationWindowTooLarge(ReconciliationError):
    status = 422
    code = "reconciliation_window_too_large"
    title = "Stripe reports more balance transactions than a run may read"
