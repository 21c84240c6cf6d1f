"""Stripe's form encoding, decoded and validated as Stripe does."""

from __future__ import annotations

import pytest

from payments_sandbox.errors import StripeApiError
from payments_sandbox.params import Params, decode


class TestDecode:
    def test_nested_maps_and_indexed_lists(self) -> None:
        pairs = [
            ("metadata[order_id]", "7"),
            ("line_items[1][quantity]", "2"),
            ("line_items[0][price_data][unit_amount]", "1000"),
            ("line_items[0][quantity]", "1"),
            ("expand[0]", "balance_transaction"),
            ("capabilities[transfers][requested]", "true"),
        ]

        assert decode(pairs) == {
            "metadata": {"order_id": "7"},
            "line_items": [
                {"price_data": {"unit_amount": "1000"}, "quantity": "1"},
                {"quantity": "2"},
            ],
            "expand": ["balance_transaction"],
            "capabilities": {"transfers": {"requested": "true"}},
        }

    def test_bracket_lists_and_digit_metadata_keys(self) -> None:
        decoded = decode([("expand[]", "a"), ("expand[]", "b"), ("metadata[0]", "x")])

        assert decoded == {"expand": ["a", "b"], "metadata": {"0": "x"}}

    def test_empty_metadata_value_unsets_the_key(self) -> None:
        assert Params(decode([("metadata[a]", ""), ("metadata[b]", "1")])).metadata() == {"b": "1"}


class TestParams:
    def test_unknown_parameter_is_refused_by_name(self) -> None:
        with pytest.raises(StripeApiError) as refused:
            Params({"amount": "1", "amout": "2"}, allowed=("amount",))

        assert (refused.value.code, refused.value.param, refused.value.stored) == (
            "parameter_unknown",
            "amout",
            False,
        )

    def test_nested_errors_name_the_full_parameter(self) -> None:
        params = Params(decode([("line_items[0][price_data][unit_amount]", "x")]))

        with pytest.raises(StripeApiError) as invalid:
            params.child("line_items.0").required_integer("price_data.unit_amount")
        with pytest.raises(StripeApiError) as missing:
            params.child("line_items.0").required_integer("quantity")

        assert invalid.value.param == "line_items[0][price_data][unit_amount]"
        assert invalid.value.message == "Invalid integer: x"
        assert missing.value.param == "line_items[0][quantity]"
        assert missing.value.code == "parameter_missing"

    @pytest.mark.parametrize(
        ("value", "message"),
        [("1.5", "Invalid integer: 1.5"), ("ten", "Invalid integer: ten")],
    )
    def test_amounts_are_integers(self, value: str, message: str) -> None:
        with pytest.raises(StripeApiError) as refused:
            Params({"amount": value}).integer("amount")

        assert refused.value.message == message

    def test_metadata_limits(self) -> None:
        too_long_key = {"metadata": {"k" * 41: "v"}}
        too_many = {"metadata": {f"k{i}": "v" for i in range(51)}}

        for data in (too_long_key, too_many):
            with pytest.raises(StripeApiError):
                Params(data).metadata()

    def test_currency_is_lowercased_and_checked(self) -> None:
        assert Params({"currency": "USD"}).currency() == "usd"
        with pytest.raises(StripeApiError):
            Params({"currency": "xyz"}).currency()
