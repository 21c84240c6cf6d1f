"""How Stripe's balance transactions and the ledger's ``stripe_balance`` entries are
matched, object by object. Pure functions: no database, no network.

Both sides are reduced to *items*: the signed effect of one Stripe object on the
platform's money at Stripe (positive: money came in), keyed by (object type, Stripe id,
currency).

Stripe's side, from each balance transaction:
- ``charge``/``payment``: the gross amount keyed by the charge's PaymentIntent (the
  ledger names payments by it) and, separately, ``-fee`` as a ``stripe_fee`` keyed by the
  balance transaction id (the ledger records Stripe's fee under ``stripe:fee:{txn}``);
- refunds, refund failures, disputes and their reversals, transfers and their reversals,
  application fees, other fees: the net amount keyed by the source object's id (a
  transfer reversal by its transfer);
- payouts to the platform's bank and top-ups from it are not mirrored by the ledger:
  excluded and summed apart.

Direct payments (destination charges) are matched as one object per payment,
``direct_payment`` keyed by the PaymentIntent: Stripe splits them into a charge, a transfer
to the payee (the gross, or the gross less the fee), an application fee, and on refund a
refund, a transfer reversal and an application fee refund, whose decomposition the
ledger does not mirror (it records the platform's net: the fee, and what each refund
gives back). Stripe's objects are tied to the payment through the window's own
transactions (:class:`Links`): a transfer by its ``source_transaction``, an application
fee by its ``originating_transaction``, a refund carrying a ``transfer_reversal`` by its
PaymentIntent, a reversal by its ``source_refund`` or transfer, a fee refund by its fee.
An application fee refund whose fee is not in the window stays its own object.

The ledger's side, from each transaction that moved ``stripe_balance``: the Stripe id
named by its cause key (``stripe:refund:re_…``, ``escrow_funding:pi_…``) or else by a
metadata value (a withdrawal's ``transfer``), the amount being the opposite of the
``stripe_balance`` postings. A transaction naming no Stripe object (a manual
correction) is unattributed: summed apart, never a mismatch.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from payments_api.stripe.objects import ApplicationFee, BalanceSource, BalanceTransaction

EXCLUDED_TYPES = frozenset(
    {
        "payout",
        "payout_cancel",
        "payout_failure",
        "payout_minimum_balance_hold",
        "payout_minimum_balance_release",
        "topup",
        "topup_reversal",
        "reserve_transaction",
        "reserved_funds",
    }
)
_STRIPE_ID = re.compile(r"^(pi|ch|py|re|pyr|dp|du|tr|trr|txn|fee|fr|po)_[A-Za-z0-9_]+$")
_PREFIX_TYPES = {
    "pi": "charge",
    "ch": "charge",
    "py": "charge",
    "re": "refund",
    "pyr": "refund",
    "dp": "dispute",
    "du": "dispute",
    "tr": "transfer",
    "trr": "transfer_reversal",
    "txn": "stripe_fee",
    "fee": "application_fee",
    "fr": "application_fee_refund",
    "po": "payout",
}

Key = tuple[str, str, str]
"""(object type, Stripe id, currency)"""


@dataclass(frozen=True, slots=True)
class Item:
    object_type: str
    stripe_id: str
    currency: str
    amount: int
    """Signed effect on the platform's money at Stripe, minor units."""
    ref: str | int
    """The balance transaction id (Stripe) or ledger transaction id (ledger)."""

    @property
    def key(self) -> Key:
        return (self.object_type, self.stripe_id, self.currency)


@dataclass(slots=True)
class Side:
    amount: int = 0
    refs: list[str | int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str
    object_type: str
    stripe_id: str
    currency: str
    stripe_amount: int | None
    ledger_amount: int | None
    balance_transaction_ids: list[str]
    ledger_transaction_ids: list[int]


@dataclass(frozen=True, slots=True)
class LedgerMovement:
    """One ledger transaction's net posting on ``stripe_balance`` in one currency."""

    transaction_id: int
    cause_key: str
    metadata: Mapping[str, Any]
    created_at: datetime
    currency: str
    stripe_balance_amount: int
    type: str = ""


DIRECT_LEDGER_TYPES = frozenset({"direct_payment_fee", "direct_refund"})


@dataclass(slots=True)
class Links:
    """Which Stripe objects of the window belong to which direct payment (PaymentIntent)."""

    payment_of: dict[str, str] = field(default_factory=dict)
    """Stripe id (ch, tr, fee, re, trr) -> PaymentIntent of a destination charge."""


def _is_destination_charge(charge: BalanceSource) -> bool:
    """A destination charge names the transfer Stripe made to the connected account."""
    return bool(charge.transfer)


def unresolved_fees(transactions: Iterable[BalanceTransaction], context: Links) -> list[str]:
    """Application fees named by the window's fee refunds that the window does not tie to
    a payment (the fee was taken on an earlier day): to be looked up at Stripe."""
    fees = {
        t.source.fee
        for t in transactions
        if t.type == "application_fee_refund"
        and t.source is not None
        and t.source.fee
        and t.source.id not in context.payment_of
    }
    return sorted(fees)


def payment_of_fee(fee: ApplicationFee) -> str | None:
    """The PaymentIntent of an application fee retrieved with ``originating_transaction``
    expanded (the platform's destination charge)."""
    origin = fee.originating_transaction
    return origin.payment_intent if origin is not None else None


def links(
    transactions: Iterable[BalanceTransaction], fees: Mapping[str, str] | None = None
) -> Links:
    """Tie the window's transfers, fees, refunds and reversals to destination charges;
    ``fees`` adds application fees looked up at Stripe (fee id -> PaymentIntent)."""
    found = Links()
    found.payment_of.update(fees or {})
    by_type: dict[str, list[BalanceSource]] = defaultdict(list)
    for transaction in transactions:
        if transaction.source is not None:
            by_type[transaction.type].append(transaction.source)
    of = found.payment_of
    for charge in by_type["charge"] + by_type["payment"]:
        intent = charge.payment_intent
        if intent and _is_destination_charge(charge):
            of[charge.id] = intent
            for linked in (charge.transfer, charge.application_fee):
                if linked:
                    of[linked] = intent
    for transfer in by_type["transfer"]:
        intent = of.get(str(transfer.source_transaction))
        if intent:
            of[transfer.id] = intent
    for fee in by_type["application_fee"]:
        origin = fee.originating_transaction or fee.charge
        intent = of.get(str(origin))
        if intent:
            of[fee.id] = intent
    for refund in by_type["refund"] + by_type["payment_refund"]:
        intent = refund.payment_intent
        reversal = refund.transfer_reversal
        if intent and reversal:
            of[refund.id] = intent
            of[reversal] = intent
    for back in by_type["transfer_refund"]:
        intent = of.get(str(back.source_refund)) or of.get(str(back.transfer))
        if intent:
            of[back.id] = intent
    for refund in by_type["application_fee_refund"]:
        intent = of.get(str(refund.fee))
        if intent:
            of[refund.id] = intent
    return found


def stripe_items(
    transaction: BalanceTransaction, context: Links | None = None
) -> list[Item] | None:
    """A balance transaction as items; None when the ledger does not mirror its type."""
    kind = transaction.type
    if kind in EXCLUDED_TYPES:
        return None
    txn = transaction.id
    currency = transaction.currency.lower()
    amount = transaction.amount
    fee = transaction.fee
    net = amount - fee if transaction.net is None else transaction.net
    source = transaction.source
    source_id = source.id if source is not None else txn
    category = transaction.reporting_category
    direct = context.payment_of.get(source_id) if context is not None else None
    if direct is not None:
        if kind in ("charge", "payment"):
            items = [Item("direct_payment", direct, currency, amount, txn)]
            if fee:
                items.append(Item("stripe_fee", txn, currency, -fee, txn))
            return items
        return [Item("direct_payment", direct, currency, net, txn)]
    if kind in ("charge", "payment"):
        key = (source.payment_intent if source is not None else None) or source_id
        items = [Item("charge", key, currency, amount, txn)]
        if fee:
            items.append(Item("stripe_fee", txn, currency, -fee, txn))
        return items
    if kind in ("refund", "payment_refund"):
        return [Item("refund", source_id, currency, net, txn)]
    if kind in ("refund_failure", "payment_failure_refund"):
        return [Item("refund_failure", source_id, currency, net, txn)]
    disputed = source_id.startswith(("dp_", "du_"))
    if category == "dispute" or (kind == "adjustment" and disputed and amount < 0):
        return [Item("dispute", source_id, currency, net, txn)]
    if category == "dispute_reversal" or (kind == "adjustment" and disputed and amount > 0):
        return [Item("dispute_reversal", source_id, currency, net, txn)]
    if kind == "transfer":
        return [Item("transfer", source_id, currency, net, txn)]
    if kind in ("transfer_cancel", "transfer_failure", "transfer_refund"):
        transfer = source.transfer if source is not None else None
        return [Item("transfer_reversal", transfer or source_id, currency, net, txn)]
    if kind in ("application_fee", "application_fee_refund"):
        return [Item(kind, source_id, currency, net, txn)]
    if kind in ("stripe_fee", "stripe_fx_fee", "tax_fee"):
        return [Item("stripe_fee", txn, currency, net, txn)]
    return [Item(kind[:32], source_id, currency, net, txn)]


def _stripe_ids(movement: LedgerMovement) -> list[str]:
    found = [t for t in movement.cause_key.split(":") if _STRIPE_ID.match(t)]
    if found:
        return found
    return [
        value
        for _name, value in sorted(movement.metadata.items())
        if isinstance(value, str) and _STRIPE_ID.match(value)
    ]


def ledger_item(movement: LedgerMovement) -> Item | None:
    """A ledger movement as an item; None when it names no Stripe object."""
    intent = movement.metadata.get("payment_intent")
    if movement.type in DIRECT_LEDGER_TYPES and isinstance(intent, str):
        return Item(
            "direct_payment",
            intent,
            movement.currency,
            -movement.stripe_balance_amount,
            movement.transaction_id,
        )
    ids = _stripe_ids(movement)
    if not ids:
        return None
    stripe_id = ids[0]
    object_type = _PREFIX_TYPES[stripe_id.split("_", 1)[0]]
    amount = -movement.stripe_balance_amount
    if object_type == "refund" and "refund_failed" in movement.cause_key:
        object_type = "refund_failure"
    elif object_type == "dispute" and "reinstated" in movement.cause_key:
        object_type = "dispute_reversal"
    elif object_type == "transfer" and amount > 0:
        object_type = "transfer_reversal"
    return Item(object_type, stripe_id, movement.currency, amount, movement.transaction_id)


def aggregate(items: Iterable[Item]) -> dict[Key, Side]:
    sides: dict[Key, Side] = defaultdict(Side)
    for item in items:
        side = sides[item.key]
        side.amount += item.amount
        side.refs.append(item.ref)
    return dict(sides)


@dataclass(frozen=True, slots=True)
class Outcome:
    matched: int
    mismatches: list[Mismatch]


def match(
    *,
    stripe_day: Iterable[Key],
    ledger_day: Iterable[Key],
    stripe_window: Mapping[Key, Side],
    ledger_window: Mapping[Key, Side],
) -> Outcome:
    """Compare every object of the day, on either side, over the wider window on both
    sides (so an object recorded just across midnight on the other side still matches).
    """
    matched = 0
    mismatches: list[Mismatch] = []
    for key in sorted({*stripe_day, *ledger_day}):
        stripe, ledger = stripe_window.get(key), ledger_window.get(key)
        if stripe is not None and ledger is not None and stripe.amount == ledger.amount:
            matched += 1
            continue
        if ledger is None and stripe is not None and stripe.amount == 0:
            # Stripe's parts cancel out (a refund of a direct payment without a fee):
            # the platform's money did not move, and the ledger rightly has no entry.
            matched += 1
            continue
        if ledger is None:
            kind = "missing_in_ledger"
        elif stripe is None:
            kind = "missing_at_stripe"
        else:
            kind = "amount_differs"
        mismatches.append(
            Mismatch(
                kind=kind,
                object_type=key[0],
                stripe_id=key[1],
                currency=key[2],
                stripe_amount=stripe.amount if stripe else None,
                ledger_amount=ledger.amount if ledger else None,
                balance_transaction_ids=[str(r) for r in stripe.refs] if stripe else [],
                ledger_transaction_ids=[int(r) for r in ledger.refs] if ledger else [],
            )
        )
    return Outcome(matched=matched, mismatches=mismatches)
