"""Money: integer minor units plus a lowercase ISO 4217 currency. Never floats.

Exponents come from one table (jpy has 0 decimals, kwd 3, most 2), as Stripe's API
counts them, which is not always ISO 4217's count: see the special cases below. Fees are basis
points rounded with one named rule: ROUND_HALF_EVEN ("banker's rounding") on the exact
rational product, so a fee can never be off by more than half a minor unit and ties
do not drift in the platform's favour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt
from pydantic_core import PydanticCustomError

# Minor-unit exponents of the currencies Stripe settles in, as Stripe's API counts them.
# Anything not listed is rejected rather than guessed. ISK is two-decimal here although
# ISO 4217 says 0: Stripe keeps it two-decimal for backwards compatibility (an amount of
# 100 is 1 krona), see CHARGE_STEP.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "usd", "eur", "gbp", "aud", "cad", "chf", "cny", "czk", "dkk", "hkd", "huf",
            "inr", "mxn", "nok", "nzd", "pln", "ron", "sek", "sgd", "thb", "try", "zar",
            "brl", "aed", "ils", "myr", "php", "sar", "idr", "egp", "ngn", "kes", "isk",
            "twd",
        ],
        2,
    ),
    **dict.fromkeys(
        ["jpy", "krw", "vnd", "clp", "pyg", "xof", "xaf", "ugx", "rwf"], 0
    ),
    **dict.fromkeys(["kwd", "bhd", "jod", "omr", "tnd"], 3),
}  # fmt: skip

# Stripe's special cases (https://docs.stripe.com/currencies#special-cases), which
# amounts sent to Stripe must follow or Stripe refuses them:
# - isk: charges and refunds in whole krónur, i.e. multiples of 100 minor units;
# - three-decimal currencies (kwd, bhd, jod, omr, tnd): charges end in 0 (multiples of 10);
# - huf and twd: charged with two decimals, but paid out in whole units (multiples of
#   100); isk likewise. Withdrawals end in a payout to the payee's bank, so they follow
#   the payout step.
CHARGE_STEP: dict[str, int] = {"isk": 100, "kwd": 10, "bhd": 10, "jod": 10, "omr": 10, "tnd": 10}
PAYOUT_STEP: dict[str, int] = {"isk": 100, "huf": 100, "twd": 100}

# Amounts above this cannot be represented by Stripe (8 digits of the major unit for
# most currencies); far below BIGINT so sums of many postings stay safe.
MAX_MINOR_AMOUNT = 99_999_999_999


class CurrencyError(ValueError):
    pass


def normalize_currency(value: object) -> str:
    """A currency code from inside the service (Stripe objects, stored rows, settings):
    lower-cased. Requests go through :data:`Currency`, which normalises nothing."""
    if not isinstance(value, str):
        raise CurrencyError("currency must be a 3-letter ISO 4217 code string")
    code = value.strip().lower()
    if code not in CURRENCY_EXPONENTS:
        raise CurrencyError(f"unsupported currency {value!r}")
    return code


def _api_currency(value: object) -> str:
    """A currency code as a request sends it: exactly one of the supported lower-case
    codes. Upper case and padding are refused, not normalised, so the contract (an enum
    of lower-case codes) and the validator accept exactly the same strings."""
    if not isinstance(value, str):
        raise PydanticCustomError("currency_type", "currency must be a string")
    if value in CURRENCY_EXPONENTS:
        return value
    if value.strip().lower() in CURRENCY_EXPONENTS:
        raise PydanticCustomError(
            "currency_not_lowercase",
            "currency codes are lower case, as Stripe writes them: send '{expected}'",
            {"expected": value.strip().lower()},
        )
    raise PydanticCustomError(
        "currency_unsupported", "unsupported currency; see the enum of the schema"
    )


def charge_step(currency: str) -> int:
    """Charges and refunds in ``currency`` are multiples of this (Stripe's special cases)."""
    return CHARGE_STEP.get(currency, 1)


def payout_step(currency: str) -> int:
    """Payouts in ``currency`` are multiples of this (Stripe's special cases)."""
    return PAYOUT_STEP.get(currency, 1)


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


def major_to_minor(major: int | Decimal | str, currency: str) -> int:
    """Exact conversion of a major-unit amount (e.g. ``"10.00"``) to minor units."""
    value = Decimal(str(major)) * (Decimal(10) ** exponent(currency))
    if value != value.to_integral_value():
        raise ValueError(f"{major} has more decimals than {currency} allows")
    return int(value)


def format_minor(amount: int, currency: str) -> str:
    exp = exponent(currency)
    return f"{Decimal(amount).scaleb(-exp):.{exp}f} {currency.upper()}"


def basis_points_of(amount: int, bps: int) -> int:
    """``amount * bps / 10_000`` rounded half-even, exactly (no float on the way)."""
    if bps < 0:
        raise ValueError("basis points must be >= 0")
    # amount * bps < 10**16, well inside Decimal's 28 significant digits: exact.
    exact = Decimal(amount * bps) / Decimal(10_000)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` minor units in proportion to ``weights``, exactly.

    Each part gets the floor of its quota ``total * weight / sum(weights)``; the units
    left over (fewer than the number of parts) go one each to the parts with the largest
    remainders, ties to the earlier part. The parts always sum to ``total``. Integer
    arithmetic only.
    """
    if total < 0 or any(w < 0 for w in weights) or not weights:
        raise ValueError("largest_remainder needs a total >= 0 and weights >= 0")
    whole = sum(weights)
    if whole == 0:
        raise ValueError("largest_remainder needs a positive sum of weights")
    parts = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(parts)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        parts[index] += 1
    return parts


def proportional_part(amount: int, total: int, share: int, before: int) -> int:
    """The part of a refund of ``amount`` that comes out of ``share`` (of a payment of
    ``total``), when ``before`` minor units of the payment were refunded already.

    Cumulative largest remainder: after every refund, what each share has given back is
    the largest-remainder split of everything refunded so far, so partial refunds add up
    to exactly the share when the whole payment is refunded, whatever the steps.
    """
    if not 0 <= before <= before + amount <= total:
        raise ValueError("refunds cannot exceed the payment")
    rest = total - share

    def given_back(refunded: int) -> int:
        return largest_remainder(refunded, [rest, share])[1]

    return given_back(before + amount) - given_back(before)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of one currency. Arithmetic refuses to mix currencies."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int of minor units")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyError(f"cannot mix {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __str__(self) -> str:
        return format_minor(self.amount, self.currency)


def _reject_non_int(value: Any) -> Any:
    # StrictInt already refuses "10" and 10.5; this also refuses bools and integral
    # floats like 10.0 with a message a client developer can act on.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("amount must be an integer number of minor units (e.g. 1050 = 10.50)")
    return value


MinorAmount = Annotated[
    StrictInt,
    BeforeValidator(_reject_non_int),
    Field(
        gt=0,
        le=MAX_MINOR_AMOUNT,
        description="Positive amount in the currency's minor unit (cents for usd, yen for "
        "jpy, fils for kwd).",
        examples=[1050],
    ),
]
"""A strictly positive amount of minor units, as the API accepts it."""

SignedMinorAmount = Annotated[
    StrictInt,
    BeforeValidator(_reject_non_int),
    Field(
        ge=-MAX_MINOR_AMOUNT,
        le=MAX_MINOR_AMOUNT,
        description="Signed amount in the currency's minor unit.",
        examples=[-1050],
    ),
]

Currency = Annotated[
    str,
    BeforeValidator(_api_currency),
    Field(
        description="Lowercase ISO 4217 currency code, as Stripe writes it; one of the "
        "supported codes. Upper case is refused (`currency_not_lowercase`), not normalised.",
        examples=["usd"],
        json_schema_extra={"enum": sorted(CURRENCY_EXPONENTS), "pattern": "^[a-z]{3}$"},
    ),
]


class MoneyRead(BaseModel):
    """An amount of money in JSON: ``{"amount": 1050, "currency": "eur"}``."""

    model_config = ConfigDict(frozen=True)

    amount: int = Field(description="Amount in minor units.", examples=[1050])
    currency: str = Field(description="Lowercase ISO 4217 code.", examples=["eur"])


@dataclass(frozen=True, slots=True)
class AmountLimits:
    minimum: int
    maximum: int


def default_limits(
    currency: str, *, minimum_major: int = 10, maximum_major: int = 10_000
) -> AmountLimits:
    """Limits of 10.00 to 10,000.00 of the major unit (the SPEC's defaults)."""
    return AmountLimits(
        minimum=major_to_minor(minimum_major, currency),
        maximum=major_to_minor(maximum_major, currency),
    )


LimitedOperation = Literal["topup", "debit", "withdrawal", "cashout"]
LIMITED_OPERATIONS: tuple[LimitedOperation, ...] = ("topup", "debit", "withdrawal", "cashout")


class OperationLimits(BaseModel):
    """Smallest and largest amount of one operation, in the currency's **major** unit
    (``"0.50"``, ``50``), so one table reads the same for usd, jpy and kwd."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: Decimal = Field(gt=0)
    max: Decimal = Field(gt=0)


class CurrencyLimits(BaseModel):
    """Per-currency limits of top-ups (and direct payments), wallet debits, withdrawals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topup: OperationLimits
    debit: OperationLimits
    withdrawal: OperationLimits
    cashout: OperationLimits | None = None
    """Wallet cash-outs to card. Unset: from the debit minimum (leftovers are small) to
    the top-up maximum (no cash-out refunds more than one top-up could bring in)."""

    def of(self, operation: LimitedOperation) -> OperationLimits:
        """One operation's limits (the cash-out's default filled in)."""
        if operation == "cashout" and self.cashout is None:
            return OperationLimits(min=self.debit.min, max=self.topup.max)
        pair: OperationLimits = getattr(self, operation)
        return pair


def _limits(
    topup: tuple[str, str], debit: tuple[str, str], withdrawal: tuple[str, str]
) -> CurrencyLimits:
    def one(pair: tuple[str, str]) -> OperationLimits:
        return OperationLimits(min=Decimal(pair[0]), max=Decimal(pair[1]))

    return CurrencyLimits(topup=one(topup), debit=one(debit), withdrawal=one(withdrawal))


DEFAULT_AMOUNT_LIMITS: dict[str, CurrencyLimits] = {
    "usd": _limits(("10", "10000"), ("0.01", "10000"), ("10", "10000")),
    "eur": _limits(("10", "10000"), ("0.01", "10000"), ("10", "10000")),
    "gbp": _limits(("10", "10000"), ("0.01", "10000"), ("10", "10000")),
    "jpy": _limits(("50", "1000000"), ("1", "1000000"), ("1000", "1000000")),
    "kwd": _limits(("3", "3000"), ("0.001", "3000"), ("3", "3000")),
}
"""Built-in limits; ``PAYMENTS_AMOUNT_LIMITS`` adds currencies or replaces these."""


def check_limits_table(table: dict[str, CurrencyLimits]) -> dict[str, CurrencyLimits]:
    """Lowercase ISO codes, min <= max, amounts exact in minor units; raises ValueError."""
    checked: dict[str, CurrencyLimits] = {}
    for code, limits in table.items():
        currency = normalize_currency(code)
        if currency != code:
            raise ValueError(f"limits: currency {code!r} must be a lowercase ISO 4217 code")
        for operation in LIMITED_OPERATIONS:
            pair = limits.of(operation)
            if major_to_minor(pair.min, currency) > major_to_minor(pair.max, currency):
                raise ValueError(f"limits: {currency} {operation} min is above max")
            if major_to_minor(pair.max, currency) > MAX_MINOR_AMOUNT:
                raise ValueError(f"limits: {currency} {operation} max is too large")
        checked[currency] = limits
    return checked


def operation_limits(
    table: dict[str, CurrencyLimits], currency: str, operation: LimitedOperation
) -> AmountLimits | None:
    """The limits of ``operation`` in ``currency`` in minor units; None when the
    currency has none (the operation is then refused)."""
    limits = table.get(currency)
    if limits is None:
        return None
    pair = limits.of(operation)
    return AmountLimits(
        minimum=major_to_minor(pair.min, currency), maximum=major_to_minor(pair.max, currency)
    )
