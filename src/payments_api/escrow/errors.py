from __future__ import annotations

from payments_api.problems import ProblemError


class EscrowError(ProblemError):
    status = 422
    code = "escrow_error"
    title = "Escrow error"


class EscrowNotFound(EscrowError):
    """Also what a stranger gets for someone else's escrow: its existence is not revealed."""

    status = 404
    code = "escrow_not_found"
    title = "No such escrow"


class PayeeNotFound(EscrowError):
    """Unknown user, or a user without the payee role (the two are not told apart)."""

    status = 404
    code = "payee_not_found"
    title = "No such payee"


class SelfOffer(EscrowError):
    status = 422
    code = "escrow_self_offer"
    title = "A job cannot be offered to yourself"


class EscrowAmountTooLarge(EscrowError):
    status = 422
    code = "escrow_amount_too_large"
    title = "The amount plus the platform fee exceeds the largest amount supported"


class EscrowAmountTooSmall(EscrowError):
    """Below the currency's minimum job price (``minimum`` extension): at least
    ``PAYMENTS_ESCROW_MIN_MAJOR`` of the major unit, and never so small that a configured
    fee rounds to nothing."""

    status = 422
    code = "escrow_amount_too_small"
    title = "The amount is below the smallest job price for this currency"


class EscrowInvalidTransition(EscrowError):
    """The escrow's current status does not allow the requested transition."""

    status = 409
    code = "escrow_invalid_transition"
    title = "The escrow is not in a state that allows this transition"


class EscrowActionForbidden(EscrowError):
    """A party of the escrow asked for a transition that is not theirs to make."""

    status = 403
    code = "escrow_action_forbidden"
    title = "You may not perform this action on this escrow"


class CaptureUnavailable(EscrowError):
    """Manual capture asked of an escrow it does not apply to: ``capture_method=manual``
    on an escrow not paid by card, ``amount_to_capture`` on an escrow that is not
    waiting on an authorization, or a cancel while its capture is being asked."""

    status = 409
    code = "escrow_capture_unavailable"
    title = "This escrow has no card authorization to capture"


class CaptureAmountInvalid(EscrowError):
    """``amount_to_capture`` is not between the smallest hold of a job (``minimum``: the
    minimum job price plus its platform fee) and the authorized amount (``maximum``)."""

    status = 422
    code = "escrow_capture_amount_invalid"
    title = "The amount to capture is not within the authorization"


class EscrowCheckoutIncomplete(ProblemError):
    """A Checkout payment for a job (the `escrow` purpose) without what the escrow needs."""

    status = 422
    code = "escrow_checkout_incomplete"
    title = "A job payment needs a payee, an amount, a currency and a reference"
