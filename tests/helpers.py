"""Test helpers: tokens, Stripe-signed webhook payloads, Stripe's own fixtures."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from jose import jwt

from payments_api.installation import OutgoingKeys

TEST_JWT_SECRET = "test-secret-that-is-long-enough-0123456789abcdef"
# The project's own Stripe-shaped fixtures (field names as Stripe sends them; see
# tests/fixtures/stripe/README.md). Nothing outside the repository is read.
STRIPE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"


# The test database's outgoing-key deriver, set once per session by tests/conftest.py.
OUTGOING_KEYS: OutgoingKeys | None = None


def stripe_key(operation: str, record_id: int | str) -> str:
    """The idempotency key the service sends Stripe for ``operation`` on a record of
    the test database (namespaced by that database, payments_api.installation)."""
    if OUTGOING_KEYS is None:
        raise RuntimeError("the session fixture has not read the test database's namespace")
    return OUTGOING_KEYS.derive(operation, record_id)


def make_token(
    sub: str = "user_1",
    roles: list[str] | None = None,
    *,
    secret: str = TEST_JWT_SECRET,
    algorithm: str = "HS256",
    ttl: int = 86_400,
    **claims: Any,
) -> str:
    """A signed token. A day by default: modules mint their admin's token at import, and a
    suite on a busy machine runs longer than the ten minutes these tokens once lived."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": sub,
        "roles": roles if roles is not None else ["customer"],
        "iat": now,
        "exp": now + ttl,
        **claims,
    }
    token: str = jwt.encode(body, secret, algorithm=algorithm)
    return token


def auth(sub: str = "user_1", roles: list[str] | None = None, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, roles, **claims)}"}


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header exactly as Stripe computes it:
    ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed by the endpoint secret>``."""
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{ts}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def stripe_object(name: str) -> dict[str, Any]:
    """A Stripe-shaped object from tests/fixtures/stripe."""
    data: dict[str, Any] = json.loads((STRIPE_FIXTURES / f"{name}.json").read_text())
    return data


def make_event(
    event_type: str,
    data_object: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    account: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A Stripe Event envelope (tests/fixtures/stripe/event.json) around an object."""
    import uuid

    event = stripe_object("event")
    event.update(
        id=event_id or f"evt_{uuid.uuid4().hex[:24]}",
        type=event_type,
        created=created if created is not None else int(time.time()),
        livemode=livemode,
        api_version="2026-10-28.endive",
        data={"object": data_object},
    )
    if account is not None:
        event["account"] = account
    return event


def signed_webhook(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The exact bytes and headers Stripe would POST for ``event``."""
    body = json.dumps(event).encode()
    return body, {
        "Stripe-Signature": stripe_signature(body, secret, timestamp),
        "Content-Type": "application/json",
    }
