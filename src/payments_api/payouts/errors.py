from __future__ import annotations

from payments_api.problems import ProblemError


class PayoutAccountNotReady(ProblemError):
    status = 409
    code = "payout_account_not_ready"
    title = "The payout account cannot receive money yet"


class WalletFrozen(ProblemError):
    status = 409
    code = "wallet_frozen"
    title = "Withdrawals are blocked while the wallet is frozen"


class WithdrawalNotFound(ProblemError):
    status = 404
    code = "withdrawal_not_found"
    title = "No such withdrawal"
