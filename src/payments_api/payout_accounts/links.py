"""Signed state for the onboarding refresh/return URLs.

Stripe sends the payee's browser to our refresh/return URLs without our bearer token,
so the URL itself carries who it is for: a short-lived HS256 token bound to the user,
the Stripe account and its purpose. It is signed with a key of its own (never the
platform's JWT secret), so it cannot be replayed as an API token or the other way round.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from jose import jwt
from jose.exceptions import JOSEError

from payments_api.payout_accounts.errors import InvalidLinkState
from payments_api.settings import Settings
from payments_api.stripe.base import SANDBOX_API_KEY

ALGORITHM = "HS256"
PURPOSE = "payout_account_onboarding"
REFRESH_PATH = "/api/v1/payout-account/onboarding/refresh"
RETURN_PATH = "/api/v1/payout-account/onboarding/return"


@dataclass(frozen=True, slots=True)
class LinkState:
    user_id: str
    stripe_account_id: str


def _key(settings: Settings) -> str:
    if settings.connect_link_state_secret is not None:
        return settings.connect_link_state_secret.get_secret_value()
    # Derived (domain-separated) from the Stripe key, which every replica shares and
    # production requires; the sandbox's public key makes sandbox links forgeable, which
    # is acceptable only because sandbox moves no real money.
    stripe_key = (
        settings.stripe_secret_key.get_secret_value()
        if settings.stripe_secret_key is not None
        else SANDBOX_API_KEY
    )
    return hmac.new(stripe_key.encode(), PURPOSE.encode(), hashlib.sha256).hexdigest()


def sign_state(settings: Settings, state: LinkState, *, now: int | None = None) -> str:
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "sub": state.user_id,
        "acct": state.stripe_account_id,
        "purpose": PURPOSE,
        "iat": issued,
        "exp": issued + settings.connect_link_state_ttl_seconds,
    }
    token: str = jwt.encode(claims, _key(settings), algorithm=ALGORITHM)
    return token


def verify_state(settings: Settings, token: str | None) -> LinkState:
    """The state's user and account; raises :class:`InvalidLinkState`."""
    if not token:
        raise InvalidLinkState("The link carries no state.")
    try:
        claims = jwt.decode(
            token, _key(settings), algorithms=[ALGORITHM], options={"require_exp": True}
        )
    except JOSEError as exc:
        raise InvalidLinkState("The link is invalid or has expired.") from exc
    user_id, account_id = claims.get("sub"), claims.get("acct")
    if claims.get("purpose") != PURPOSE or not isinstance(user_id, str):
        raise InvalidLinkState("The link is invalid or has expired.")
    if not isinstance(account_id, str):
        raise InvalidLinkState("The link is invalid or has expired.")
    return LinkState(user_id=user_id, stripe_account_id=account_id)


def landing_urls(settings: Settings, state: LinkState) -> tuple[str, str]:
    """``(refresh_url, return_url)`` for an account link, each with fresh signed state."""
    base = settings.public_base_url.rstrip("/")
    query = urlencode({"state": sign_state(settings, state)})
    return f"{base}{REFRESH_PATH}?{query}", f"{base}{RETURN_PATH}?{query}"
