from __future__ import annotations

from payments_api.ledger.errors import WalletFrozen
from payments_api.problems import ProblemError

__all__ = ["PayoutAccountNotReady", "WalletFrozen", "WithdrawalNotFound"]


class PayoutAccountNotReady(ProblemError):
    status = 409
    code = "payout_account_not_ready"
    title = "The payout account cannot receive money yet"


class WithdrawalNotFound(ProblemError):
    status = 404
    code = "withdrawal_not_found"
    title = "No such withdrawal"
