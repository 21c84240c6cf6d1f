"""A fresh, migrated benchmark database with the HTTP scenarios' data, seeded in SQL.

Seeding writes the ledger directly (set-based ``INSERT ... SELECT``) with PostgreSQL's
per-row triggers switched off for the seeding session only (``session_replication_role
= replica``): a million rows through the deferred balance trigger would take minutes.
Every seeded ledger transaction is balanced and every cached balance equals its
postings; the invariant check at the end of the run covers the seeded rows too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from tests.db_setup import _recreate

from bench import workload as w
from payments_api.db import RawStatement, asyncpg_dsn, to_asyncpg_url
from payments_api.jobs.queue import install_queue_schema
from payments_api.ledger import statements
from payments_api.ledger.kinds import PLATFORM_SHARDS
from payments_api.migrations import upgrade_to_head

ID_STRIDE = 1_000_000_000
"""Every identity column counts from its own multiple of this (see bench/replay.py)."""
SEEDED_TABLES = (
    "users",
    "ledger_accounts",
    "ledger_balances",
    "ledger_transactions",
    "ledger_postings",
    "earnings",
    "earnings_rollups",
    "earnings_totals",
    "orders",
    "escrows",
    "idempotency_keys",
    "webhook_events",
)


def create_database(admin: str, name: str) -> str:
    """Drop and recreate ``name``, migrate it like ``payments-api serve --migrate`` does
    (alembic head, then pgqueuer's schema); returns its asyncpg URL."""
    asyncio.run(_recreate(admin, name))
    url = to_asyncpg_url(make_url(admin).set(database=name).render_as_string(False))
    upgrade_to_head(url)
    asyncio.run(install_queue_schema(asyncpg_dsn(url)))
    return url


async def spread_identities(connection: Any) -> None:
    """Start every bigint identity column at its own multiple of ``ID_STRIDE``."""
    rows = await connection.fetch(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = 'public' AND is_identity = 'YES' AND data_type = 'bigint'
           ORDER BY table_name, column_name"""
    )
    for k, row in enumerate(rows, start=1):
        await connection.execute(
            f'ALTER TABLE "{row["table_name"]}" ALTER COLUMN "{row["column_name"]}" '
            f"RESTART WITH {k * ID_STRIDE}"
        )


_INSERT_ACCOUNT = RawStatement.of(statements.INSERT_ACCOUNT)


async def seed(url: str, sizes: w.Sizes) -> dict[str, Any]:
    """Seed everything; returns facts the run needs (order id base, counts)."""
    started = time.perf_counter()
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await spread_identities(connection)
        superuser = await connection.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        async with connection.transaction():
            if superuser:
                await connection.execute("SET LOCAL session_replication_role = replica")
            facts = await _seed(connection, sizes)
        for table in SEEDED_TABLES:
            await connection.execute(f"VACUUM ANALYZE {table}")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    facts["seconds"] = time.perf_counter() - started
    return facts


async def _users(connection: Any, prefix: str, first: int, last: int, role: str) -> None:
    await connection.execute(
        f"""INSERT INTO users (id, roles)
            SELECT '{prefix}' || lpad(g::text, 7, '0'), ARRAY['{role}']::varchar[]
            FROM generate_series({first}, {last}) AS g"""  # noqa: S608 (constants)
    )


async def _seed(connection: Any, sizes: w.Sizes) -> dict[str, Any]:
    clients = sizes.escrow_clients
    # Users: balance readers, escrow customers and payees (index 0 records the traces),
    # Idempotency-Key replayers, webhook top-up users, the payee with a million earnings.
    await _users(connection, "u", 1, sizes.balance_users, "customer")
    await _users(connection, "c", 0, clients, "customer")
    await _users(connection, "p", 0, clients, "payee")
    await _users(connection, "r", 0, clients, "customer")
    await _users(connection, "w", 1, w.WEBHOOK_USERS, "customer")
    await _users(connection, "e", 1, 1, "payee")

    for kind in ("stripe_balance", "platform_fees"):
        await connection.execute(
            _INSERT_ACCOUNT.sql,
            *_INSERT_ACCOUNT.args(
                {
                    "owner": None,
                    "kind": kind,
                    "currency": w.CURRENCY,
                    "may_go_negative": True,
                    "shard_count": PLATFORM_SHARDS,
                }
            ),
        )
    # Every account a scenario touches exists up front, so the recorded SQL of a
    # request is the same for every user (no first-posting account creation).
    await connection.execute(
        """INSERT INTO ledger_accounts (owner_user_id, kind, currency, may_go_negative,
                                        shard_count)
           SELECT u.id, k.kind, $1, false, 1
           FROM users u
           CROSS JOIN LATERAL unnest(CASE
               WHEN u.id LIKE 'p%' OR u.id LIKE 'w%' OR u.id LIKE 'e%'
                   THEN ARRAY['available']
               ELSE ARRAY['available', 'escrow'] END) AS k(kind)
           ORDER BY u.id, k.kind""",
        w.CURRENCY,
    )
    await connection.execute(
        """INSERT INTO ledger_balances (account_id, shard, currency, kind, may_go_negative)
           SELECT id, 0, currency, kind, may_go_negative FROM ledger_accounts
           WHERE owner_user_id IS NOT NULL"""
    )
    # One balanced top-up per funded user: +X on the user's available, -X on the
    # platform's stripe_balance (shard 0).
    await connection.execute(
        """INSERT INTO ledger_transactions (type, cause_type, cause_key, metadata)
           SELECT 'topup', 'system', 'bench:seed:' || id, '{}'::jsonb FROM users
           WHERE id LIKE 'u%' OR id LIKE 'c%' OR id LIKE 'r%'
           ORDER BY id"""
    )
    funded = """CASE WHEN a.owner_user_id LIKE 'u%' THEN $1::bigint ELSE $2::bigint END"""
    await connection.execute(
        f"""INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
            SELECT t.id, a.id, a.currency, {funded}
            FROM ledger_transactions t
            JOIN ledger_accounts a
              ON a.owner_user_id = substr(t.cause_key, 12) AND a.kind = 'available'
            WHERE t.cause_key LIKE 'bench:seed:%'
            UNION ALL
            SELECT t.id, s.id, s.currency, -({funded})
            FROM ledger_transactions t
            JOIN ledger_accounts a
              ON a.owner_user_id = substr(t.cause_key, 12) AND a.kind = 'available'
            CROSS JOIN (SELECT id, currency FROM ledger_accounts
                        WHERE owner_user_id IS NULL AND kind = 'stripe_balance') s
            WHERE t.cause_key LIKE 'bench:seed:%'""",  # noqa: S608 (constants)
        w.SEED_AVAILABLE,
        w.SEED_RICH,
    )
    await connection.execute(
        """UPDATE ledger_balances b SET balance = p.total
           FROM (SELECT account_id, sum(amount) AS total FROM ledger_postings
                 GROUP BY account_id) p
           WHERE b.account_id = p.account_id
             AND b.shard = (SELECT min(shard) FROM ledger_balances x
                            WHERE x.account_id = b.account_id)"""
    )

    # A payee with a million earnings entries over the last two years.
    await connection.execute(
        """INSERT INTO earnings (payee_id, source_type, source_id, amount, currency,
                                 reference, earned_at)
           SELECT $1, 'escrow', 'esc_seed_' || g, 700 + g % 600, $2, 'job-' || g,
                  now() - g * interval '63 seconds'
           FROM generate_series(1, $3::int) AS g""",
        w.EARNINGS_PAYEE,
        w.CURRENCY,
        sizes.earnings_rows,
    )
    # The summary's rollups of those entries, as the earnings_rollup trigger keeps them
    # (15-minute UTC buckets and all-time totals; no project is project_id ''). The
    # trigger is off while seeding as a superuser; rebuilt from scratch either way.
    await connection.execute("DELETE FROM earnings_rollups")
    await connection.execute("DELETE FROM earnings_totals")
    await connection.execute(
        """INSERT INTO earnings_rollups (payee_id, bucket_start, currency, project_id,
                                         amount, entries)
           SELECT payee_id,
                  date_bin(interval '15 minutes', earned_at,
                           TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                  currency, coalesce(project_id, ''), sum(amount), count(*)
           FROM earnings GROUP BY 1, 2, 3, 4"""
    )
    await connection.execute(
        """INSERT INTO earnings_totals (payee_id, currency, project_id, amount, entries)
           SELECT payee_id, currency, coalesce(project_id, ''), sum(amount), count(*)
           FROM earnings GROUP BY 1, 2, 3"""
    )
    # Pending top-up orders awaiting their payment_intent.succeeded.
    await connection.execute(
        """INSERT INTO orders (user_id, purpose, channel, status, amount, currency,
                               idempotency_key, request_fingerprint,
                               stripe_payment_intent_id)
           SELECT 'w' || lpad((g % $1 + 1)::text, 7, '0'), 'topup', 'payment_intent',
                  'pending', $2, $3, 'bench-order-' || lpad(g::text, 12, '0'),
                  repeat('0', 64), 'pi_bench' || lpad(g::text, 12, '0')
           FROM generate_series(1, $4::int) AS g ORDER BY g""",
        w.WEBHOOK_USERS,
        w.WEBHOOK_AMOUNT,
        w.CURRENCY,
        sizes.orders,
    )
    base, contiguous = await connection.fetchrow(
        """SELECT min(id), bool_and(id - min_id + 1
                                   = substr(stripe_payment_intent_id, 9)::bigint)
           FROM orders, (SELECT min(id) AS min_id FROM orders) m"""
    )
    if not contiguous:
        raise RuntimeError("seeded order ids are not contiguous")
    transactions = int(await connection.fetchval("SELECT count(*) FROM ledger_transactions"))
    return {"order_base": int(base), "seed_transactions": transactions}


def order_id(base: int, g: int) -> int:
    return base + g - 1
