"""The one rule that splits a refund between the payee's share and the platform's fee."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments_api.money import largest_remainder, proportional_part


def test_leftover_units_go_to_the_largest_remainders_ties_to_the_first() -> None:
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert largest_remainder(333, [2_250, 250]) == [300, 33]  # 299.7 and 33.3
    assert largest_remainder(5, [1, 1]) == [3, 2]  # 2.5 each: the first part wins the tie
    assert largest_remainder(0, [3, 0]) == [0, 0]


def test_refused_inputs() -> None:
    with pytest.raises(ValueError, match="total >= 0"):
        largest_remainder(-1, [1])
    with pytest.raises(ValueError, match="positive sum"):
        largest_remainder(1, [0, 0])
    with pytest.raises(ValueError, match="cannot exceed"):
        proportional_part(2, 10, 1, 9)


@given(
    total=st.integers(1, 10**9),
    share_permille=st.integers(0, 1_000),
    cuts=st.lists(st.integers(1, 10**6), min_size=1, max_size=12),
)
def test_partial_refunds_add_up_to_the_exact_share(
    total: int, share_permille: int, cuts: list[int]
) -> None:
    share = total * share_permille // 1_000
    refunded, taken = 0, 0
    for cut in cuts:
        amount = min(cut, total - refunded)
        if amount == 0:
            break
        part = proportional_part(amount, total, share, refunded)
        assert 0 <= part <= amount
        refunded, taken = refunded + amount, taken + part
        assert taken == largest_remainder(refunded, [total - share, share])[1]
    rest = total - refunded
    if rest:
        taken += proportional_part(rest, total, share, refunded)
    assert taken == share
