"""Matching rules, on Stripe's real balance transaction shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from payments_api.reconciliation.matching import (
    LedgerMovement,
    aggregate,
    ledger_item,
    match,
    stripe_items,
)
from payments_api.stripe.objects import BalanceTransaction, parse_object
from tests.helpers import stripe_object


def bt(kind: str, amount: int, source: Any, fee: int = 0, **extra: Any) -> BalanceTransaction:
    transaction = stripe_object("balance_transaction")
    transaction.update(
        id=f"txn_{kind}_{abs(amount)}",
        type=kind,
        amount=amount,
        fee=fee,
        net=amount - fee,
        source=source,
        **extra,
    )
    return parse_object(BalanceTransaction, transaction)


def movement(cause_key: str, amount: int, **metadata: Any) -> LedgerMovement:
    return LedgerMovement(
        transaction_id=1,
        cause_key=cause_key,
        metadata=metadata,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        currency="usd",
        stripe_balance_amount=amount,
    )


class TestStripeItems:
    def test_charge_is_keyed_by_its_payment_intent_and_its_fee_apart(self) -> None:
        charge = stripe_object("charge")
        charge.update(id="ch_1", payment_intent="pi_1")
        items = stripe_items(bt("charge", 1_000, charge, fee=59))
        assert items is not None
        assert [(i.object_type, i.stripe_id, i.amount) for i in items] == [
            ("charge", "pi_1", 1_000),
            ("stripe_fee", "txn_charge_1000", -59),
        ]

    @pytest.mark.parametrize(
        ("kind", "amount", "source", "extra", "expected"),
        [
            ("refund", -500, "re_1", {}, ("refund", "re_1", -500)),
            ("refund_failure", 500, "re_1", {}, ("refund_failure", "re_1", 500)),
            (
                "adjustment",
                -2_000,
                "dp_1",
                {"reporting_category": "dispute"},
                ("dispute", "dp_1", -3_500),
            ),
            (
                "adjustment",
                2_000,
                "dp_1",
                {"reporting_category": "dispute_reversal"},
                ("dispute_reversal", "dp_1", 2_000),
            ),
            ("transfer", -700, "tr_1", {}, ("transfer", "tr_1", -700)),
            (
                "transfer_refund",
                300,
                {"id": "trr_1", "object": "transfer_reversal", "transfer": "tr_1"},
                {},
                ("transfer_reversal", "tr_1", 300),
            ),
            ("application_fee", 90, "fee_1", {}, ("application_fee", "fee_1", 90)),
        ],
    )
    def test_other_types_use_the_net_amount_and_the_source(
        self,
        kind: str,
        amount: int,
        source: Any,
        extra: dict[str, Any],
        expected: tuple[str, str, int],
    ) -> None:
        fee = 1_500 if kind == "adjustment" and amount < 0 else 0
        items = stripe_items(bt(kind, amount, source, fee=fee, **extra))
        assert items is not None
        assert [(i.object_type, i.stripe_id, i.amount) for i in items] == [expected]

    def test_payouts_to_the_bank_are_not_mirrored(self) -> None:
        assert stripe_items(bt("payout", -10_000, "po_1")) is None


class TestLedgerItem:
    @pytest.mark.parametrize(
        ("cause_key", "amount", "metadata", "expected"),
        [
            ("stripe:payment:pi_9", -1_000, {}, ("charge", "pi_9", 1_000)),
            ("escrow_funding:pi_9", -1_000, {}, ("charge", "pi_9", 1_000)),
            ("stripe:fee:txn_9", 59, {"charge": "ch_9"}, ("stripe_fee", "txn_9", -59)),
            ("stripe:refund:re_9", 500, {}, ("refund", "re_9", -500)),
            ("stripe:refund_failed:re_9", -500, {}, ("refund_failure", "re_9", 500)),
            ("stripe:dispute:dp_9:funds_withdrawn", 3_500, {}, ("dispute", "dp_9", -3_500)),
            (
                "stripe:dispute:dp_9:funds_reinstated",
                -2_000,
                {},
                ("dispute_reversal", "dp_9", 2_000),
            ),
            (
                "withdrawal:5:transferred",
                700,
                {"withdrawal_id": 5, "transfer": "tr_9"},
                ("transfer", "tr_9", -700),
            ),
        ],
    )
    def test_stripe_id_from_cause_key_or_metadata(
        self, cause_key: str, amount: int, metadata: dict[str, Any], expected: tuple[str, str, int]
    ) -> None:
        item = ledger_item(movement(cause_key, amount, **metadata))
        assert item is not None
        assert (item.object_type, item.stripe_id, item.amount) == expected

    def test_manual_correction_is_unattributed(self) -> None:
        assert ledger_item(movement("admin_adjustment:admin_1:key", 5, reason="typo")) is None


class TestMatch:
    def test_each_kind_of_disagreement(self) -> None:
        stripe = aggregate(
            [
                *(stripe_items(bt("refund", -500, "re_same")) or []),
                *(stripe_items(bt("refund", -400, "re_diff")) or []),
                *(stripe_items(bt("refund", -300, "re_stripe_only")) or []),
            ]
        )
        ledger_items = [
            ledger_item(movement("stripe:refund:re_same", 500)),
            ledger_item(movement("stripe:refund:re_diff", 450)),
            ledger_item(movement("stripe:refund:re_ledger_only", 200)),
        ]
        ledger = aggregate(i for i in ledger_items if i is not None)

        outcome = match(
            stripe_day=list(stripe),
            ledger_day=list(ledger),
            stripe_window=stripe,
            ledger_window=ledger,
        )

        assert outcome.matched == 1
        assert sorted(
            (m.kind, m.stripe_id, m.stripe_amount, m.ledger_amount) for m in outcome.mismatches
        ) == [
            ("amount_differs", "re_diff", -400, -450),
            ("missing_at_stripe", "re_ledger_only", None, -200),
            ("missing_in_ledger", "re_stripe_only", -300, None),
        ]
