"""Bearer JWT verification. The platform's auth issues tokens; this service verifies.

Algorithms are pinned by configuration and the key is chosen by algorithm family from
configuration, never from the token, so an ``alg: none`` token or an HS/RS swap (an
RSA public key used as an HMAC secret) cannot pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jose import jwt
from jose.exceptions import JOSEError

from payments_api.problems import ProblemError, Unauthorized
from payments_api.settings import Settings

Role = Literal["customer", "payee", "admin", "service"]
# ``service``: a machine-to-machine token of the platform's own backend (wallet debits,
# off-session top-ups on a user's behalf); it holds no wallet of its own.
KNOWN_ROLES: frozenset[str] = frozenset({"customer", "payee", "admin", "service"})
# A bearer token larger than this is refused before any parsing (headers are bounded
# by servers around 8 KiB anyway); the email claim is bounded by RFC 5321's 320.
MAX_TOKEN_LENGTH = 8192
MAX_EMAIL_LENGTH = 320
MAX_SUB_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the verified token says."""

    sub: str
    roles: frozenset[str]
    email: str | None

    def has_role(self, role: str) -> bool:
        return role in self.roles


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "Invalid or expired token"


class TokenVerifier:
    """Verifies bearer tokens; remembers the ones it verified until they expire.

    Apps send the same token with every request until it expires, and a verification
    (header parsing, signature, claims) was a visible share of a short request's CPU,
    paid twice per write (the idempotency layer and the route). Only tokens that passed
    every check are remembered, keyed by the whole token string, so nothing unverified
    can be served from the cache; an entry is dropped once ``exp`` (plus the configured
    leeway) has passed, never later than a fresh verification would start refusing it.

    The cache is bounded twice, oldest entry out first: by entries (``CACHE_SIZE``) and
    by the characters of the token strings it holds (``CACHE_CHARS``), so a flood of
    large valid tokens (up to ``MAX_TOKEN_LENGTH`` each) cannot grow it past a few MiB.
    """

    CACHE_SIZE = 4096
    CACHE_CHARS = 4 * 1024 * 1024

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._cached_chars = 0
        self._algorithms = list(settings.jwt_algorithms)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._hmac_secret = settings.effective_jwt_secret()
        self._public_key: str | dict[str, Any] | None = None
        if settings.jwt_jwks_file is not None:
            self._public_key = json.loads(settings.jwt_jwks_file.read_text())
        elif settings.jwt_public_key_file is not None:
            self._public_key = settings.jwt_public_key_file.read_text()
        # The key of every accepted algorithm when they all take the same one (all HS,
        # or all public-key with a key configured), else None.
        keys = {"hmac" if a.startswith("HS") else "public" for a in self._algorithms}
        family = next(iter(keys)) if len(keys) == 1 else None
        self._only_key: str | dict[str, Any] | None = (
            self._hmac_secret if family == "hmac" else self._public_key if family else None
        )

    def _key_for(self, algorithm: str) -> str | dict[str, Any]:
        key = self._hmac_secret if algorithm.startswith("HS") else self._public_key
        if key is None:
            raise InvalidToken("No key is configured for this token's algorithm.")
        return key

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, valid_until = cached
            if self._clock() < valid_until:
                return principal
            self._forget(token)
        principal, expires_at = self._verify(token)
        while self._verified and (
            len(self._verified) >= self.CACHE_SIZE
            or self._cached_chars + len(token) > self.CACHE_CHARS
        ):
            # Forget the oldest entry (dicts keep insertion order).
            self._forget(next(iter(self._verified)))
        self._verified[token] = (principal, expires_at + self._leeway)
        self._cached_chars += len(token)
        return principal

    def _forget(self, token: str) -> None:
        del self._verified[token]
        self._cached_chars -= len(token)

    def _accepted_algorithm(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise InvalidToken("Malformed token.") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise InvalidToken("Token algorithm is not accepted.")
        return algorithm

    def _refusal(self, token: str) -> InvalidToken:
        """Why a token was refused, in the words of the header-first check."""
        try:
            self._key_for(self._accepted_algorithm(token))
        except InvalidToken as refusal:
            return refusal
        return InvalidToken("Token signature or claims are invalid.")

    def _decode(
        self, token: str, key: str | dict[str, Any], algorithms: list[str]
    ) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=self._audience,
            issuer=self._issuer,
            options={
                # The dates are checked below against this verifier's clock (the same
                # one the cache uses), not python-jose's wall clock; its require_exp
                # would switch its own exp check back on.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": self._audience is not None,
                "require_aud": self._audience is not None,
                "require_iss": self._issuer is not None,
            },
        )
        return claims

    def _verify(self, token: str) -> tuple[Principal, float]:
        """Full verification: the principal and the token's ``exp``."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("Token is too large.")
        if self._only_key is not None:
            # One key for every accepted algorithm: no need to read the header first
            # (a second parse of the whole token). python-jose still refuses any
            # algorithm not in the list; a refusal is diagnosed as before.
            try:
                claims = self._decode(token, self._only_key, self._algorithms)
            except JOSEError as exc:
                raise self._refusal(token) from exc
        else:
            algorithm = self._accepted_algorithm(token)
            try:
                claims = self._decode(token, self._key_for(algorithm), [algorithm])
            except JOSEError as exc:
                raise InvalidToken("Token signature or claims are invalid.") from exc
        # python-jose accepts a numeric string for ``exp``/``iat`` and does not refuse
        # an ``iat`` in the future: RFC 7519 NumericDates are JSON numbers, and a token
        # issued later than now (beyond the skew) is refused.
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidToken(f"The `{name}` claim must be a number.")
        if "exp" not in claims:
            raise InvalidToken("The token has no `exp` claim.")
        now = self._clock()
        expires_at = float(claims["exp"])
        if now >= expires_at + self._leeway:
            raise InvalidToken("The token has expired.")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and now < nbf - self._leeway:
            raise InvalidToken("The token is not valid yet.")
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > now + self._leeway:
            raise InvalidToken("The token was issued in the future.")
        return principal_from_claims(claims), expires_at


PRINCIPAL_STATE = "principal"
"""Key in the request's ``scope["state"]`` (``request.state.principal``) holding the
outcome of verifying its bearer token: a :class:`Principal`, the ``ProblemError`` the
token got, or None without a bearer token."""

Authentication = Principal | ProblemError | None


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bearer_token(scope: Any) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    authorization = _header(scope, b"authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authenticate(scope: Any, verifier: TokenVerifier) -> Authentication:
    """Verify the request's bearer token once per request: the outcome is kept in its
    scope state, so the rate limiter, the idempotency layer and the route's
    ``PrincipalDep`` (in that order) share one decoding."""
    state: dict[str, Any] = scope.setdefault("state", {})
    if PRINCIPAL_STATE in state:
        outcome: Authentication = state[PRINCIPAL_STATE]
        return outcome
    token = bearer_token(scope)
    if token is None:
        outcome = None
    else:
        try:
            outcome = verifier.verify(token)
        except ProblemError as exc:
            outcome = exc
    state[PRINCIPAL_STATE] = outcome
    return outcome


def caller_id(scope: Any) -> str | None:
    """The verified caller's ``sub`` for the rate limiter's per-user limit, or None (no
    token, a bad one: the route gives that 401; the per-IP limit still counts it)."""
    app = scope.get("app")
    resources = getattr(getattr(app, "state", None), "resources", None)
    verifier: TokenVerifier | None = getattr(resources, "verifier", None)
    if verifier is None:
        return None
    principal = authenticate(scope, verifier)
    return principal.sub if isinstance(principal, Principal) else None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUB_LENGTH:
        raise InvalidToken("Token has no usable `sub` claim.")
    if not _printable(sub):
        raise InvalidToken("The `sub` claim holds control characters or lone surrogates.")
    raw_roles = claims.get("roles", [])
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    if not isinstance(raw_roles, list):
        raise InvalidToken("The `roles` claim must be a list.")
    # Roles this service does not know are ignored: the platform may have its own.
    roles = frozenset(r for r in raw_roles if isinstance(r, str) and r in KNOWN_ROLES)
    email = claims.get("email")
    if email is not None and (
        not isinstance(email, str) or len(email) > MAX_EMAIL_LENGTH or not _printable(email)
    ):
        raise InvalidToken("The `email` claim is not a usable address.")
    return Principal(sub=sub, roles=roles, email=email)


def _printable(text: str) -> bool:
    """No control characters (NUL among them) and storable as UTF-8."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def mint_dev_token(
    settings: Settings,
    *,
    sub: str,
    roles: list[str],
    email: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """A locally signed HS token for development; refused in production."""
    if settings.is_production:
        raise RuntimeError("refusing to mint tokens in production")
    secret = settings.effective_jwt_secret()
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), None)
    if secret is None or algorithm is None:
        raise RuntimeError("token minting needs an HS algorithm and a secret configured")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    if email:
        claims["email"] = email
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    token: str = jwt.encode(claims, secret, algorithm=algorithm)
    return token
