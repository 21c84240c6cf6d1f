# ruff: noqa: S608 - every statement here is built from constants only
"""Baseline A0: a settlement's business effect in minimal hand-written SQL.

Where baseline A replays the statements the service sends (recorded), A0 is what a
settlement must do at the least, one statement (one round trip, committing by itself)
per request: create moves the hold from the customer's available to their escrow,
accept moves the platform fee to the platform's hot ``platform_fees`` account (a free
shard picked with SKIP LOCKED, as the service does), complete pays the payee, the
service fee to ``platform_fees`` and records the earnings entry. Each statement writes
the escrow row, the balanced ledger transaction (same cause keys), its postings in one
multi-row insert and the balance rows, so the benchmark's money checks hold for A0's
settlements too, and the database's own triggers (non-negative balances, balanced
postings at commit, earnings rollups) run as for the service.

Left out, so it is a floor rather than a rival implementation: the caller's user row
and frozen-wallet checks, Idempotency-Key rows (the escrow's ``creation_key`` and the
ledger's cause keys still make each step happen once), the outgoing events, and the
answer's JSON (A0 returns ids only).
"""

from __future__ import annotations

from typing import Any

from bench import workload as w
from payments_api.escrow.fees import split
from payments_api.settings import Settings

_SETTINGS = Settings(_env_file=None)
PARTS = split(
    w.ESCROW_PRICE,
    platform_fee_bps=_SETTINGS.escrow_platform_fee_bps,
    service_fee_bps=_SETTINGS.escrow_service_fee_bps,
)

# The platform_fees shard a step credits: any shard no other transaction holds, else 0.
_FEE_SHARD = """
    fee AS MATERIALIZED (
        SELECT a.id AS account_id,
               coalesce((SELECT s.shard FROM ledger_balances s
                         WHERE s.account_id = a.id
                         ORDER BY random() LIMIT 1
                         FOR UPDATE SKIP LOCKED), 0) AS shard
        FROM ledger_accounts a
        WHERE a.owner_user_id IS NULL AND a.kind = 'platform_fees' AND a.currency = $3::varchar
    )"""

# Shared tail: the transaction row, the balance updates, the postings.
_POST = """
    tx AS (
        INSERT INTO ledger_transactions (type, cause_type, cause_key, description, metadata)
        SELECT {type}, 'escrow', 'escrow:' || esc.id || ':{step}',
               'Escrow esc_' || esc.id || ': {step}',
               jsonb_build_object('escrow_id', esc.id, 'reference', esc.reference)
        FROM esc
        RETURNING id
    ),
    applied AS (
        UPDATE ledger_balances b SET balance = b.balance + m.delta
        FROM moves m
        WHERE b.account_id = m.account_id AND b.shard = m.shard
        RETURNING b.account_id
    ),
    posted AS (
        INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
        SELECT tx.id, m.account_id, $3::varchar, m.delta FROM tx, moves m
        RETURNING id
    )"""

CREATE = (
    """
    WITH esc AS (
        INSERT INTO escrows (customer_id, payee_id, status, funding, currency, price_amount,
                             platform_fee_bps, service_fee_bps, platform_fee_amount,
                             service_fee_amount, payee_amount, hold_amount,
                             keeps_platform_fee_on_cancel, reference, creation_key,
                             creation_fingerprint, funded_at)
        SELECT $1::varchar, $2::varchar, 'created', 'wallet', $3::varchar, $4, $5, $6, $7,
               $8, $9, $10, $11, $12, $13, repeat('0', 64), now()
        FROM users p
        WHERE p.id = $2::varchar AND 'payee' = ANY(p.roles)
        RETURNING id, customer_id, hold_amount, reference
    ),
    moves AS (
        SELECT a.id AS account_id, 0 AS shard,
               CASE a.kind WHEN 'available' THEN -esc.hold_amount ELSE esc.hold_amount END
                   AS delta
        FROM esc
        JOIN ledger_accounts a
          ON a.owner_user_id = esc.customer_id AND a.currency = $3::varchar
         AND a.kind IN ('available', 'escrow')
    ),"""
    + _POST.format(type="'escrow_hold'", step="hold")
    + """
    SELECT id FROM esc
    """
)

ACCEPT = (
    """
    WITH esc AS (
        UPDATE escrows SET status = 'accepted', accepted_at = now(), updated_at = now()
        WHERE id = $1::bigint AND status = 'created' AND payee_id = $2::varchar
        RETURNING id, customer_id, platform_fee_amount, reference
    ),"""
    + _FEE_SHARD
    + """,
    moves AS (
        SELECT a.id AS account_id, 0 AS shard, -esc.platform_fee_amount AS delta
        FROM esc
        JOIN ledger_accounts a
          ON a.owner_user_id = esc.customer_id AND a.kind = 'escrow' AND a.currency = $3::varchar
        UNION ALL
        SELECT fee.account_id, fee.shard, esc.platform_fee_amount FROM esc, fee
    ),"""
    + _POST.format(type="'escrow_platform_fee'", step="accept")
    + """
    SELECT id FROM esc
    """
)

COMPLETE = (
    """
    WITH esc AS (
        UPDATE escrows
        SET status = 'completed', completed_at = now(), completed_by = $2::varchar,
            updated_at = now()
        WHERE id = $1::bigint AND status = 'accepted' AND customer_id = $2::varchar
        RETURNING id, customer_id, payee_id, price_amount, service_fee_amount, payee_amount,
                  reference, project_id, session_id, completed_at
    ),"""
    + _FEE_SHARD
    + """,
    moves AS (
        SELECT a.id AS account_id, 0 AS shard, -esc.price_amount AS delta
        FROM esc
        JOIN ledger_accounts a
          ON a.owner_user_id = esc.customer_id AND a.kind = 'escrow' AND a.currency = $3::varchar
        UNION ALL
        SELECT fee.account_id, fee.shard, esc.service_fee_amount FROM esc, fee
        UNION ALL
        SELECT a.id, 0, esc.payee_amount
        FROM esc
        JOIN ledger_accounts a
          ON a.owner_user_id = esc.payee_id AND a.kind = 'available' AND a.currency = $3::varchar
    ),"""
    + _POST.format(type="'escrow_settlement'", step="complete")
    + """,
    earned AS (
        INSERT INTO earnings (payee_id, source_type, source_id, escrow_id, amount, currency,
                              reference, project_id, session_id, earned_at,
                              ledger_transaction_id)
        SELECT esc.payee_id, 'escrow', 'esc_' || esc.id, esc.id, esc.payee_amount, $3::varchar,
               esc.reference, esc.project_id, esc.session_id, esc.completed_at, tx.id
        FROM esc, tx
        RETURNING id
    )
    SELECT id FROM esc
    """
)


async def create(connection: Any, customer: str, payee: str, key: str) -> int:
    escrow = await connection.fetchval(
        CREATE,
        customer,
        payee,
        w.CURRENCY,
        PARTS.price,
        _SETTINGS.escrow_platform_fee_bps,
        _SETTINGS.escrow_service_fee_bps,
        PARTS.platform_fee,
        PARTS.service_fee,
        PARTS.payee_take,
        PARTS.hold,
        _SETTINGS.escrow_keep_platform_fee_on_cancel,
        w.ESCROW_REFERENCE,
        key,
    )
    if escrow is None:
        raise RuntimeError("A0 create did nothing")
    return int(escrow)


async def accept(connection: Any, escrow: int, payee: str) -> None:
    if await connection.fetchval(ACCEPT, escrow, payee, w.CURRENCY) is None:
        raise RuntimeError("A0 accept did nothing")


async def complete(connection: Any, escrow: int, customer: str) -> None:
    if await connection.fetchval(COMPLETE, escrow, customer, w.CURRENCY) is None:
        raise RuntimeError("A0 complete did nothing")
