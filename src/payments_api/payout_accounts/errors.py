from __future__ import annotations

from payments_api.problems import ProblemError


class PayoutAccountError(ProblemError):
    """Base of the payout-account domain's problems."""


class PayoutSetupIncomplete(PayoutAccountError):
    # 422 and this code are fixed by the contract (SPEC 6.3); the body also carries
    # `message`, as every problem of the service does.
    status = 422
    code = "payout_setup_incomplete"
    title = "Payout account setup is not complete"


class PayoutAccountNotFound(PayoutAccountError):
    status = 404
    code = "payout_account_not_found"
    title = "No payout account"


class PayoutAccountBusy(PayoutAccountError):
    status = 409
    code = "payout_account_busy"
    title = "The payout account is being set up by another request; retry shortly"

    def __init__(self, detail: str | None = None, *, retry_after: int = 2) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class InvalidLinkState(PayoutAccountError):
    """The signed state of an onboarding return/refresh URL is missing, forged or old."""

    status = 400
    code = "invalid_link_state"
    title = "This setup link is invalid or has expired"
