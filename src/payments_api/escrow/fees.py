"""How an escrow's price is split. One rounding rule, stated once.

Rule: each fee is ``basis_points_of(P, bps)`` from :mod:`payments_api.money`, i.e.
``P * bps / 10_000`` on the exact rational value, rounded to a whole minor unit with
ROUND_HALF_EVEN (banker's rounding: a tie goes to the even neighbour, so ties do not
drift in the platform's favour over many jobs).

Leftover minor unit: the payee's take is not rounded at all; it is the remainder
``P - service_fee``. The customer holds ``P + platform_fee``. So, by construction, in
every currency (zero-decimal jpy and three-decimal kwd included, since all of this is
integer minor units):

- completed: ``hold = platform_fee + service_fee + payee_take``
- cancelled before accept: ``hold = refund``
- cancelled after accept: ``hold = refund + platform_fee`` (fee kept) or ``hold = refund``
  (fee refunded)

The database checks the first two identities on every escrow row as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from payments_api.money import basis_points_of


@dataclass(frozen=True, slots=True)
class Split:
    """An escrow's amounts in minor units, fixed at creation."""

    price: int
    """P: the job price offered to the payee."""
    platform_fee: int
    """Charged to the customer on top of P; the platform's when the payee accepts."""
    service_fee: int
    """Withheld from P when the job is completed."""
    payee_take: int
    """P minus the service fee: what the payee is credited on completion."""

    @property
    def hold(self) -> int:
        """What the customer pays into escrow: P plus the platform fee."""
        return self.price + self.platform_fee


def split(price: int, *, platform_fee_bps: int, service_fee_bps: int) -> Split:
    """Split a job price P by the two fee rates (basis points, 0..10000)."""
    if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
        raise ValueError("price must be a positive integer of minor units")
    for bps in (platform_fee_bps, service_fee_bps):
        if not 0 <= bps <= 10_000:
            raise ValueError("fee rates are 0 to 10000 basis points")
    service_fee = basis_points_of(price, service_fee_bps)
    return Split(
        price=price,
        platform_fee=basis_points_of(price, platform_fee_bps),
        service_fee=service_fee,
        payee_take=price - service_fee,
    )


def smallest_price_with_fees(*fee_bps: int) -> int:
    """The smallest price P at which every non-zero fee rate takes at least one minor unit.

    A fee rounds half-even, so it is at least 1 exactly when ``P * bps / 10_000 > 1/2``,
    i.e. ``P * bps > 5_000``. Rates of 0 take nothing at any price and are left out.
    """
    return max((5_000 // bps + 1 for bps in fee_bps if bps > 0), default=1)


def smallest_hold(floor_price: int, *, platform_fee_bps: int, service_fee_bps: int) -> int:
    """The smallest hold of an escrow whose price is at least ``floor_price`` and at
    least the smallest price at which every non-zero fee takes a minor unit: below it, a
    partial capture would buy a job whose fees round away to nothing."""
    price = max(floor_price, smallest_price_with_fees(platform_fee_bps, service_fee_bps))
    return split(price, platform_fee_bps=platform_fee_bps, service_fee_bps=service_fee_bps).hold


def split_for_hold(hold: int, *, platform_fee_bps: int, service_fee_bps: int) -> Split:
    """The split of an escrow whose customer paid ``hold`` in all (a partial capture).

    The price P is the largest one whose ``P + platform_fee(P)`` does not exceed
    ``hold``, split by :func:`split`; when no price lands exactly on ``hold`` (a fee
    rounding step in between), the one or two minor units left over go to the platform
    fee, so the identities above still hold exactly on what was captured.
    """
    if isinstance(hold, bool) or not isinstance(hold, int) or hold <= 0:
        raise ValueError("hold must be a positive integer of minor units")
    # P * (1 + bps / 10_000) <= hold: start at the exact rational bound and step down.
    price = max(1, hold * 10_000 // (10_000 + platform_fee_bps))
    while (
        price > 1
        and split(price, platform_fee_bps=platform_fee_bps, service_fee_bps=service_fee_bps).hold
        > hold
    ):
        price -= 1
    while (
        split(price + 1, platform_fee_bps=platform_fee_bps, service_fee_bps=service_fee_bps).hold
        <= hold
    ):
        price += 1
    parts = split(price, platform_fee_bps=platform_fee_bps, service_fee_bps=service_fee_bps)
    return Split(
        price=parts.price,
        platform_fee=hold - parts.price,
        service_fee=parts.service_fee,
        payee_take=parts.payee_take,
    )
