from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from payments_api.money import (
    CURRENCY_EXPONENTS,
    Currency,
    CurrencyError,
    MinorAmount,
    Money,
    basis_points_of,
    charge_step,
    default_limits,
    exponent,
    format_minor,
    major_to_minor,
    payout_step,
)


class _Body(BaseModel):
    amount: MinorAmount
    currency: Currency


class TestMoney:
    def test_currency_table(self) -> None:
        assert exponent("usd") == 2
        assert exponent("JPY") == 0
        assert exponent("kwd") == 3
        # Stripe's special cases: isk, huf and twd are two-decimal in its API.
        assert (exponent("isk"), exponent("huf"), exponent("twd")) == (2, 2, 2)

    def test_stripe_steps(self) -> None:
        assert (charge_step("isk"), charge_step("kwd"), charge_step("huf")) == (100, 10, 1)
        assert (payout_step("huf"), payout_step("twd"), payout_step("isk")) == (100, 100, 100)
        assert (charge_step("usd"), payout_step("usd")) == (1, 1)
        with pytest.raises(CurrencyError):
            exponent("xyz")

    def test_major_to_minor_is_exact(self) -> None:
        assert major_to_minor("10.00", "usd") == 1000
        assert major_to_minor(10, "jpy") == 10
        assert major_to_minor("1.234", "kwd") == 1234
        with pytest.raises(ValueError, match="decimals"):
            major_to_minor("10.5", "jpy")

    def test_limits_follow_exponent(self) -> None:
        assert default_limits("usd").minimum == 1000
        assert default_limits("jpy").maximum == 10_000
        assert default_limits("kwd").minimum == 10_000

    def test_format(self) -> None:
        assert format_minor(1050, "eur") == "10.50 EUR"
        assert format_minor(500, "jpy") == "500 JPY"

    def test_no_mixing(self) -> None:
        with pytest.raises(CurrencyError):
            _ = Money(100, "usd") + Money(100, "eur")
        assert Money(100, "USD") + Money(5, "usd") == Money(105, "usd")

    def test_rejects_floats(self) -> None:
        with pytest.raises(TypeError):
            Money(10.5, "usd")  # type: ignore[arg-type]

    def test_basis_points_half_even(self) -> None:
        assert basis_points_of(10_000, 500) == 500
        assert basis_points_of(10, 500) == 0  # 0.5 -> 0 (to even)
        assert basis_points_of(30, 500) == 2  # 1.5 -> 2 (to even)
        assert basis_points_of(1, 2000) == 0  # 0.2

    @given(st.integers(min_value=0, max_value=99_999_999_999), st.integers(0, 10_000))
    def test_basis_points_within_half_unit(self, amount: int, bps: int) -> None:
        fee = basis_points_of(amount, bps)
        assert abs(fee * 10_000 - amount * bps) <= 5_000
        assert 0 <= fee <= amount


class TestApiTypes:
    @pytest.mark.parametrize(
        "payload",
        [
            {"amount": 1.5, "currency": "usd"},
            {"amount": 2.0, "currency": "usd"},
            {"amount": "10.5", "currency": "usd"},
            {"amount": False, "currency": "usd"},
            {"amount": 0, "currency": "usd"},
            {"amount": -1, "currency": "usd"},
            {"amount": 10**12, "currency": "usd"},
            {"amount": 100, "currency": "us"},
            {"amount": 100, "currency": 840},
        ],
    )
    def test_rejected(self, payload: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            _Body.model_validate(payload)

    def test_a_supported_lower_case_code_is_accepted(self) -> None:
        body = _Body.model_validate({"amount": 1, "currency": "jpy"})
        assert body == _Body(amount=1, currency="jpy")

    @pytest.mark.parametrize(
        ("currency", "error"),
        [
            ("JPY", "currency_not_lowercase"),
            ("Usd", "currency_not_lowercase"),
            (" usd", "currency_not_lowercase"),
            ("xyz", "currency_unsupported"),
            ("abc", "currency_unsupported"),
            (840, "currency_type"),
        ],
    )
    def test_anything_else_is_refused_with_its_own_type(self, currency: Any, error: str) -> None:
        with pytest.raises(ValidationError) as refused:
            _Body.model_validate({"amount": 1, "currency": currency})
        assert [e["type"] for e in refused.value.errors()] == [error]

    def test_the_schema_lists_exactly_the_accepted_codes(self) -> None:
        """The contract and the validator agree: every code in the enum is accepted, and
        a lower-case three-letter code outside it is refused."""
        schema = _Body.model_json_schema()["properties"]["currency"]
        assert schema["enum"] == sorted(CURRENCY_EXPONENTS)
        for code in schema["enum"]:
            assert _Body.model_validate({"amount": 1, "currency": code}).currency == code
