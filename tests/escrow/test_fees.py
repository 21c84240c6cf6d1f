"""The split of a job price: one rounding rule, parts that always sum to the hold."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from payments_api.escrow.fees import split
from payments_api.money import MAX_MINOR_AMOUNT

prices = st.one_of(st.integers(1, 1_000), st.integers(1, MAX_MINOR_AMOUNT // 2))
rates = st.integers(0, 10_000)


class TestSplit:
    def test_spec_example(self) -> None:
        parts = split(10_000, platform_fee_bps=500, service_fee_bps=2_000)
        assert (parts.hold, parts.platform_fee, parts.service_fee, parts.payee_take) == (
            10_500,
            500,
            2_000,
            8_000,
        )

    @pytest.mark.parametrize(
        ("price", "bps", "fee"),
        [
            (10, 500, 0),  # 0.5 -> 0 (half to even)
            (30, 500, 2),  # 1.5 -> 2
            (50, 500, 2),  # 2.5 -> 2
            (70, 500, 4),  # 3.5 -> 4
            (1, 5_000, 0),  # 0.5 -> 0
            (3, 5_000, 2),  # 1.5 -> 2
            (1, 10_000, 1),
            (19, 500, 1),  # 0.95 -> 1
        ],
    )
    def test_fees_round_half_even(self, price: int, bps: int, fee: int) -> None:
        assert split(price, platform_fee_bps=bps, service_fee_bps=bps).platform_fee == fee
        assert split(price, platform_fee_bps=0, service_fee_bps=bps).service_fee == fee

    @given(price=prices, platform=rates, service=rates)
    @example(price=1, platform=500, service=2_000)
    @example(price=MAX_MINOR_AMOUNT // 2, platform=10_000, service=10_000)
    def test_parts_sum_exactly_to_the_hold(self, price: int, platform: int, service: int) -> None:
        parts = split(price, platform_fee_bps=platform, service_fee_bps=service)
        assert parts.hold == parts.platform_fee + parts.service_fee + parts.payee_take
        assert parts.price == parts.service_fee + parts.payee_take
        assert min(parts.platform_fee, parts.service_fee, parts.payee_take) >= 0
        # never more than half a minor unit from the exact value
        assert abs(parts.platform_fee * 10_000 - price * platform) <= 5_000
        assert abs(parts.service_fee * 10_000 - price * service) <= 5_000

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"price": 0, "platform_fee_bps": 0, "service_fee_bps": 0},
            {"price": -1, "platform_fee_bps": 0, "service_fee_bps": 0},
            {"price": 1, "platform_fee_bps": -1, "service_fee_bps": 0},
            {"price": 1, "platform_fee_bps": 0, "service_fee_bps": 10_001},
        ],
    )
    def test_rejects_nonsense(self, kwargs: dict[str, int]) -> None:
        price = kwargs.pop("price")
        with pytest.raises(ValueError, match=r"must|are"):
            split(price, **kwargs)
