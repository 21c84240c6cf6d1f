from __future__ import annotations

from payments_api.problems import ProblemError


class RefundError(ProblemError):
    status = 409
    code = "refund_error"
    title = "The refund cannot be made"


class RefundNotFound(RefundError):
    status = 404
    code = "refund_not_found"
    title = "No such refund"


class OrderNotRefundable(RefundError):
    status = 409
    code = "order_not_refundable"
    title = "The order has no confirmed payment to refund"


class RefundNotSupported(RefundError):
    status = 409
    code = "refund_not_supported"
    title = "Refunds of this kind of order are not supported"


class RefundExceedsRefundable(RefundError):
    status = 409
    code = "refund_exceeds_refundable"
    title = "The amount is more than what is left to refund on the order"


class RefundExceedsAvailable(RefundError):
    status = 409
    code = "refund_exceeds_available"
    title = "The customer no longer holds enough available money for this refund"


class RefundCurrencyMismatch(RefundError):
    status = 422
    code = "refund_currency_mismatch"
    title = "The refund's currency is not the order's"


class RefundRejected(RefundError):
    status = 409
    code = "refund_rejected"
    title = "The payment provider refused the refund"


class RefundToCardUnavailable(RefundError):
    status = 409
    code = "refund_to_card_unavailable"
    title = "Only an escrow paid by card and cancelled before acceptance is refunded to the card"


class CreditAlreadySpent(RefundError):
    status = 409
    code = "credit_already_spent"
    title = "The buyer's available balance no longer covers the wallet credit to take back"


class NothingRefundable(RefundError):
    status = 409
    code = "nothing_refundable"
    title = "No top-up charge can be refunded to the card any more"


class WalletRefundNotFound(RefundError):
    status = 404
    code = "wallet_refund_not_found"
    title = "No such wallet refund"
