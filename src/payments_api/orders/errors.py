from __future__ import annotations

from payments_api.problems import ProblemError


class OrderNotFound(ProblemError):
    status = 404
    code = "order_not_found"
    title = "No such order"


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
    def check(cls, amount: int, currency: str, step: int, what: str) -> None:
        if step > 1 and amount % step:
            raise cls(
                f"{what} in {currency} must be a multiple of {step} minor units.",
                step=step,
            )


class RedirectUrlNotAllowed(ProblemError):
    status = 422
    code = "redirect_url_not_allowed"
    title = "The redirect URL's origin is not an allowed frontend origin"


class PriceNotFound(ProblemError):
    status = 422
    code = "price_not_found"
    title = "No such active price"


class DiscountCodeInvalid(ProblemError):
    status = 422
    code = "discount_code_invalid"
    title = "The discount code does not exist, is not valid now, or is used up"


class EscrowCheckoutIncomplete(ProblemError):
    status = 422
    code = "escrow_checkout_incomplete"
    title = "A job payment needs a payee, an amount, a currency and a reference"


class CheckoutWindowPassed(ProblemError):
    status = 409
    code = "checkout_window_passed"
    title = "This payment attempt is too old to resume"


class PriceExists(ProblemError):
    status = 409
    code = "price_exists"
    title = "A price with this lookup key exists"


class DiscountCodeExists(ProblemError):
    status = 409
    code = "discount_code_exists"
    title = "A discount code with this code exists"
