"""Problems of an amount or currency that every flow taking money shares (top-ups,
orders, escrows, withdrawals, wallet debits, refunds): the per-currency limits and
Stripe's minimum steps. One definition, so a code means the same thing everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

from payments_api.problems import ProblemError

if TYPE_CHECKING:
    from payments_api.money import LimitedOperation
    from payments_api.settings import Settings


class AmountOutOfRange(ProblemError):
    status = 422
    code = "amount_out_of_range"
    title = "The amount is outside the allowed range for this currency"


class CurrencyNotSupported(ProblemError):
    """No limits are configured for the currency, so the operation is not offered in it
    (``PAYMENTS_AMOUNT_LIMITS``). ``supported_currencies`` lists those that are."""

    status = 422
    code = "currency_not_supported"
    title = "No limits are configured for this currency: it is not accepted here"

    @classmethod
    def refuse(cls, what: str, currency: str, supported: list[str]) -> CurrencyNotSupported:
        return cls(
            f"{what} in {currency} are not accepted: no limits are configured for it.",
            currency=currency,
            supported_currencies=supported,
        )


class AmountNotInSteps(ProblemError):
    """Stripe's special cases: isk charges in whole krónur, three-decimal currencies in
    tens, huf/twd/isk payouts in whole units. The ``step`` extension says which."""

    status = 422
    code = "amount_not_in_steps"
    title = "The amount is not a multiple of the smallest step Stripe accepts in this currency"

    @classmethod
    def check(
        cls, amount: int, currency: str, step: int, what: str, *, field: str | None = None
    ) -> None:
        """``field`` names the request field at fault when the request has several
        amounts (a price's ``unit_amount`` and ``grants_credit``)."""
        if step > 1 and amount % step:
            detail = f"{what} in {currency} must be a multiple of {step} minor units."
            if field is None:
                raise cls(detail, step=step)
            raise cls(detail, step=step, field=field)


def check_limits(
    settings: Settings,
    operation: LimitedOperation,
    amount: int,
    currency: str,
    *,
    what: str,
    amounts_of: str | None = None,
) -> None:
    """Refuse an amount outside the operation's limits in its currency, or a currency
    with none configured. ``what`` names the operation in the refusal ("Withdrawals");
    ``amounts_of`` names its amounts in the range's, when it reads better otherwise."""
    limits = settings.limits(currency, operation)
    if limits is None:
        raise CurrencyNotSupported.refuse(what, currency, sorted(settings.limits_table()))
    if not limits.minimum <= amount <= limits.maximum:
        raise AmountOutOfRange(
            f"{amounts_of or what} in {currency} must be between {limits.minimum} and "
            f"{limits.maximum} minor units.",
            minimum=limits.minimum,
            maximum=limits.maximum,
        )
