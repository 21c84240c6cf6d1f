"""What the HTTP benchmark's scenarios work on, shared by the orchestrator
(``bench/http.py``), the load process (``bench/load.py``) and the baseline server
(``bench/baseline_app.py``).

Every id is a fixed-width token (``u0000001``, ``c0000003``, ``pi_bench000000000042``),
so that no id is ever a substring of another one (``bench/replay.py`` relies on it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

CURRENCY = "usd"
JWT_SECRET = "bench-jwt-secret-that-is-long-enough-0123456789"  # noqa: S105 (bench only)
WEBHOOK_SECRET = "whsec_bench_http_0123456789"  # noqa: S105 (bench only)
STRIPE_TEST_KEY = "sk_test_bench_offline_no_network"

ESCROW_PRICE = 10_000
"""Job price P of every settlement (platform fee 5% -> hold 10,500; service fee 20%)."""
WEBHOOK_AMOUNT = 2_500
"""Amount of every seeded pending top-up order (credited by its webhook)."""
SEED_AVAILABLE = 50_000
"""Available balance of every balance-read user."""
SEED_RICH = 10_000_000_000
"""Available balance of escrow customers: never runs dry."""
WEBHOOK_USERS = 1_000
ESCROW_REFERENCE = "bench-job"


def balance_user(i: int) -> str:
    return f"u{i:07d}"


def customer(i: int) -> str:
    return f"c{i:07d}"


def payee(i: int) -> str:
    return f"p{i:07d}"


def replay_user(i: int) -> str:
    return f"r{i:07d}"


def webhook_user(i: int) -> str:
    return f"w{i:07d}"


EARNINGS_PAYEE = "e0000001"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much data is seeded."""

    balance_users: int
    earnings_rows: int
    orders: int
    deep_page: int
    """The earnings page read as "page 10,000" (1-based, 20 entries a page)."""
    escrow_clients: int
    """Customers (each with their own payee) for the settlement scenario."""
    replay_keys: int
    """Completed Idempotency-Keys replayed by scenario 6."""


FULL = Sizes(
    balance_users=100_000,
    earnings_rows=1_000_000,
    orders=40_000,
    deep_page=10_000,
    escrow_clients=32,
    replay_keys=500,
)
QUICK = Sizes(
    balance_users=5_000,
    earnings_rows=50_000,
    orders=10_000,
    deep_page=1_000,
    escrow_clients=32,
    replay_keys=64,
)
PAGE_SIZE = 20


def order_pi(g: int) -> str:
    """PaymentIntent id of seeded order number ``g`` (1-based)."""
    return f"pi_bench{g:012d}"


def order_event(g: int) -> str:
    return f"evt_bench{g:012d}"


def order_user(g: int) -> str:
    return webhook_user(g % WEBHOOK_USERS + 1)


def mint_tokens(subjects: list[str], roles: list[str]) -> dict[str, str]:
    """Bearer tokens as the platform's auth would issue them (HS256, 2 h)."""
    from pydantic import SecretStr

    from payments_api.auth import mint_dev_token
    from payments_api.settings import Settings

    settings = Settings(jwt_secret=SecretStr(JWT_SECRET), _env_file=None)
    return {
        sub: mint_dev_token(settings, sub=sub, roles=roles, ttl_seconds=7200) for sub in subjects
    }


class EventTemplate:
    """A signed ``payment_intent.succeeded`` delivery for a seeded order, rendered from
    the test suite's Stripe-shaped fixtures (tests/fixtures/stripe) with no Charge
    (``latest_charge`` null), so applying it never calls Stripe."""

    def __init__(self) -> None:
        from tests.helpers import make_event, stripe_object

        intent = stripe_object("payment_intent")
        intent.update(
            id="__PI__",
            amount=WEBHOOK_AMOUNT,
            amount_received=WEBHOOK_AMOUNT,
            currency=CURRENCY,
            status="succeeded",
            latest_charge=None,
            livemode=False,
            customer=None,
            metadata={"order_id": "__ORDER__"},
        )
        event = make_event("payment_intent.succeeded", intent, event_id="__EVT__", created=1)
        self.text = json.dumps(event).replace('"created": 1,', '"created": __CREATED__,')
        if "__CREATED__" not in self.text:
            raise RuntimeError("event template lost its created field")

    def body(self, g: int, order_id: int) -> bytes:
        return (
            self.text.replace("__EVT__", order_event(g))
            .replace("__PI__", order_pi(g))
            .replace("__ORDER__", str(order_id))
            .replace("__CREATED__", str(int(time.time())))
            .encode()
        )


def stripe_signature(payload: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """``Stripe-Signature`` exactly as Stripe computes it (t=..., v1=HMAC-SHA256)."""
    timestamp = int(time.time())
    digest = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(payload: bytes, header: str, secret: str = WEBHOOK_SECRET) -> bool:
    """What a minimal route would check (baseline C): HMAC and a 300 s tolerance."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    timestamp = parts.get("t", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def escrow_body(payee_id: str) -> bytes:
    return json.dumps(
        {
            "payee_id": payee_id,
            "amount": ESCROW_PRICE,
            "currency": CURRENCY,
            "reference": ESCROW_REFERENCE,
        }
    ).encode()
