from __future__ import annotations

from payments_api.problems import ProblemError


class DebitDeclined(ProblemError):
    """Available does not cover the debit: nothing was taken (``available`` says what
    there is)."""

    status = 402
    code = "insufficient_funds"
    title = "The wallet's available balance does not cover this debit"
