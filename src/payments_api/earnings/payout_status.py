"""Where each earning's money is now, derived from what happened to the payee's money.

Pure functions (no database): the repository hands over the payee's entries and the
totals of their withdrawals and bank payouts per currency.

Money is fungible, so withdrawals and payouts are attributed to earnings **first in,
first out**, per currency, in two stages:

1. the wallet: escrow takes land in ``available``. Withdrawals take them oldest first:
   the transferred total (net of reversed transfers) has reached the payee's connected
   account; the pending total is ``withdrawing``; the rest is ``available``;
2. the connected account: direct payments (net of the payee's share reversed by
   refunds) land there at once, withdrawn escrow takes when transferred. Paid bank
   payouts take them oldest first: ``paid``; the rest is ``in_transit`` (on the Stripe
   balance or in a payout on its way to the bank; Express accounts pay out
   automatically).

What refunds took back from direct payments is ``reversed``. An entry's status is where
its last minor unit is; the summary's totals per status are exact to the unit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class EarningsPayoutStatus(StrEnum):
    """Where the earned money is now, from the payee's point of view."""

    available = "available"
    """In the payee's available balance, withdrawable."""
    withdrawing = "withdrawing"
    """A withdrawal holds it; the transfer to the connected account is not confirmed."""
    in_transit = "in_transit"
    """On the payee's connected account, not yet paid out to their bank."""
    paid = "paid"
    """Paid out to the payee's bank."""
    reversed = "reversed"
    """Taken back: the direct payment was refunded (its transfer reversed)."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    wallet: bool
    """An escrow take (in the wallet) rather than a direct payment (on the account)."""
    currency: str
    amount: int
    reversed: int
    """Minor units of ``amount`` taken back (direct payments' refunds)."""
    earned_at: datetime
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class Flows:
    """What happened to the payee's money in one currency."""

    transferred: int = 0
    """Withdrawals whose transfer exists, less what was reversed."""
    withdrawing: int = 0
    """Withdrawals still pending."""
    paid: int = 0
    """Bank payouts of the connected account that are paid."""


def _zero() -> dict[EarningsPayoutStatus, int]:
    return dict.fromkeys(EarningsPayoutStatus, 0)


@dataclass(slots=True)
class Attribution:
    status: dict[int, EarningsPayoutStatus] = field(default_factory=dict)
    """Each entry's status: where its last minor unit is."""
    parts: dict[int, dict[EarningsPayoutStatus, int]] = field(default_factory=dict)
    """Each entry's units per status (they sum to the entry's amount)."""

    def totals(self, entries: Iterable[Entry]) -> dict[str, dict[EarningsPayoutStatus, int]]:
        """Units per status and currency over ``entries`` (e.g. one project's)."""
        found: dict[str, dict[EarningsPayoutStatus, int]] = defaultdict(_zero)
        for entry in entries:
            for status, units in self.parts.get(entry.id, {}).items():
                found[entry.currency][status] += units
        return dict(found)


def _cut(total: int, start: int, end: int) -> int:
    """Units of ``[start, end)`` below ``total``."""
    return max(0, min(end, total) - start)


def attribute(entries: Iterable[Entry], flows: Mapping[str, Flows]) -> Attribution:
    result = Attribution()
    ordered = sorted(entries, key=lambda e: (e.currency, e.earned_at, e.id))
    by_currency: dict[str, list[Entry]] = defaultdict(list)
    for entry in ordered:
        by_currency[entry.currency].append(entry)
    for currency, rows in by_currency.items():
        flow = flows.get(currency, Flows())
        # Stage 1: the wallet.
        on_account: list[tuple[Entry, int, EarningsPayoutStatus | None]] = []
        position = 0
        for entry in rows:
            kept = entry.amount - entry.reversed
            parts = result.parts[entry.id] = _zero()
            parts[EarningsPayoutStatus.reversed] = entry.reversed
            if kept == 0:
                result.status[entry.id] = EarningsPayoutStatus.reversed
                continue
            if not entry.wallet:
                on_account.append((entry, kept, None))
                continue
            start, end = position, position + kept
            position = end
            moved = _cut(flow.transferred, start, end)
            held = _cut(flow.transferred + flow.withdrawing, start, end) - moved
            parts[EarningsPayoutStatus.withdrawing] = held
            parts[EarningsPayoutStatus.available] = kept - moved - held
            if end <= flow.transferred:
                last = None  # all of it reached the account: stage 2 decides
            elif end <= flow.transferred + flow.withdrawing:
                last = EarningsPayoutStatus.withdrawing
            else:
                last = EarningsPayoutStatus.available
            on_account.append((entry, moved, last))
        # Stage 2: the connected account.
        position = 0
        for entry, arrived, last in on_account:
            start, end = position, position + arrived
            position = end
            paid = _cut(flow.paid, start, end)
            parts = result.parts[entry.id]
            parts[EarningsPayoutStatus.paid] = paid
            parts[EarningsPayoutStatus.in_transit] = arrived - paid
            if last is None:
                last = (
                    EarningsPayoutStatus.paid
                    if end <= flow.paid
                    else EarningsPayoutStatus.in_transit
                )
            result.status[entry.id] = last
    return result
