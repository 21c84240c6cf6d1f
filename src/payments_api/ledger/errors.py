from __future__ import annotations

from payments_api.problems import ProblemError


class LedgerError(ProblemError):
    status = 422
    code = "ledger_error"
    title = "Ledger error"


class InsufficientFunds(LedgerError):
    """The available balance does not cover the amount: 402, the API's status for a
    declined payment (STYLE.md), on every route, like a card's ``card_declined``."""

    status = 402
    code = "insufficient_funds"
    title = "Insufficient funds"


class UnbalancedTransaction(LedgerError):
    status = 422
    code = "unbalanced_transaction"
    title = "The postings do not sum to zero per currency"


class InvalidPosting(LedgerError):
    status = 422
    code = "invalid_posting"
    title = "Invalid posting"


class WalletFrozen(LedgerError):
    """A frozen user's own action would move money out of their accounts."""

    status = 409
    code = "wallet_frozen"
    title = "The wallet is frozen"


class AlreadyReversed(LedgerError):
    status = 409
    code = "already_reversed"
    title = "The transaction has already been reversed"


class TransactionNotFound(LedgerError):
    status = 404
    code = "ledger_transaction_not_found"
    title = "No such ledger transaction"
