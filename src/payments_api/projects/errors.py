from __future__ import annotations

from payments_api.problems import ProblemError


class ProjectError(ProblemError):
    """Base of the projects domain's problems."""

    status = 422
    code = "project_error"
    title = "Project error"


class ProjectNotFound(ProjectError):
    """No such project, or (on the payee's CRUD routes and in a direct payment) one that
    is not the payee's: its existence is not revealed."""

    status = 404
    code = "project_not_found"
    title = "No such project"


class ProjectForbidden(ProjectError):
    """The wallet routes answer 403 for another user's project (SPEC 6.3)."""

    status = 403
    code = "project_forbidden"
    title = "Only the project's owner may see its wallet"


class ProjectArchived(ProjectError):
    status = 409
    code = "project_archived"
    title = "The project is archived and takes no payments or sessions"


class SessionNotFound(ProjectError):
    status = 404
    code = "session_not_found"
    title = "No such session in this project"


class SessionAlreadyOpen(ProjectError):
    status = 409
    code = "session_already_open"
    title = "The project already has an open session"


class SessionClosed(ProjectError):
    status = 409
    code = "session_closed"
    title = "The session is closed"


class PayeeNotFound(ProjectError):
    """Unknown user, or one without the payee role (the two are not told apart)."""

    status = 404
    code = "payee_not_found"
    title = "No such payee"


class PayeeCannotReceivePayments(ProjectError):
    """The payee has no payout account, or Stripe has not enabled it (yet)."""

    status = 409
    code = "payee_account_not_ready"
    title = "The payee cannot receive payments yet"


class SelfPayment(ProjectError):
    status = 422
    code = "direct_payment_to_self"
    title = "A payee cannot pay themselves"


class CurrencyMismatch(ProjectError):
    status = 422
    code = "currency_mismatch"
    title = "The payment's currency is not the project's currency"


DIRECT_PAYMENT_PROBLEMS = (
    CurrencyMismatch,
    PayeeCannotReceivePayments,
    PayeeNotFound,
    ProjectArchived,
    ProjectNotFound,
    SelfPayment,
    SessionClosed,
    SessionNotFound,
)
"""What a direct payment to a payee's project refuses, however it is paid (card
checkout or wallet): the routes that take one declare them all."""
