"""The ``Idempotency-Key`` header, as write routes receive it.

Replay itself (store the first response, answer retries with it) is done for every write
route by :class:`payments_api.idempotency.middleware.IdempotencyMiddleware`; this module
holds the header's contract: its name, its limits, the dependency that makes it
mandatory on money-moving routes, and its problems.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Header
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider
from payments_api.problems import ProblemError

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_LENGTH = 255

ONE_TRANSACTION_ATTRIBUTE = "__payments_one_transaction__"
ROUTE_SESSION = "payments_api.route_session"
"""Scope entry holding the session a one-transaction route must use (``get_session``)."""
AFTER_COMMIT = "payments_api.after_commit"
"""Scope key: work a ``@one_transaction`` route asks to run once its transaction has
committed (the middleware commits after the route, background tasks included, has run)."""
RESPONSE_RIDING = "payments_api.response_riding"
"""``session.info`` entry of a one-transaction route's session, set by the middleware
while it holds the request's Idempotency-Key: see :func:`response_riders`."""


class ResponseRiding(Protocol):
    def rider(self, status: int, headers: list[tuple[str, str]], body: bytes) -> Rider: ...


def response_riders(session: AsyncSession, status: int, model: BaseModel) -> list[Rider]:
    """The answer a ``@one_transaction`` route is going to give (``status``, ``model`` as
    FastAPI serializes a response model), stored in the request's Idempotency-Key row by
    a statement the route sends anyway (a ``db.Rider`` of it, e.g. of the ledger's
    posting) instead of an update of its own before the COMMIT. Only for an answer
    known before that statement; if the route answers otherwise after all, the
    middleware stores what it answered. Empty without such a key."""
    riding: ResponseRiding | None = session.info.get(RESPONSE_RIDING)
    if riding is None:
        return []
    body = model.model_dump_json(by_alias=True).encode()
    return [riding.rider(status, [("content-type", "application/json")], body)]


def after_commit(scope: MutableMapping[str, Any], work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work`` after the request's transaction commits, when the idempotency
    middleware holds that transaction (a ``@one_transaction`` route): True. False when
    the route's own session commits before the response, where a background task runs
    after the commit anyway."""
    if ROUTE_SESSION not in scope:
        return False
    scope.setdefault(AFTER_COMMIT, []).append(work)
    return True


EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])


def one_transaction(endpoint: EndpointT) -> EndpointT:
    """Mark a write route that only touches the database (never Stripe): with an
    Idempotency-Key, its key row is claimed at the start of the route's own transaction
    and its response stored before that transaction commits, so the request commits
    once (``IdempotencyMiddleware``). Put it under the ``@router.post(...)`` line. The
    route must use ``SessionDep`` for every write (no session of its own)."""
    setattr(endpoint, ONE_TRANSACTION_ATTRIBUTE, True)
    return endpoint


class IdempotencyKeyRequired(ProblemError):
    status = 400
    code = "idempotency_key_required"
    title = "An Idempotency-Key header is required"


class IdempotencyKeyReused(ProblemError):
    status = 422
    code = "idempotency_key_reused"
    title = "The Idempotency-Key was used for a different request"


class IdempotencyKeyInUse(ProblemError):
    status = 409
    code = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is still being processed"


async def require_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            description=(
                "Unique per logical operation (e.g. a UUID v4), at most 255 characters, "
                "scoped to the caller. A retry with the same key and the same request "
                "replays the first response (with `Idempotent-Replayed: true`); the same "
                "key with a different request is 422 `idempotency_key_reused`; while the "
                "first request is still running it is 409 `idempotency_key_in_use` with "
                "`Retry-After`. Keys are kept for at least 24 hours."
            ),
            examples=["5f0c8a7e-2b1d-4c3e-9a8f-7d6e5c4b3a21"],
        ),
    ] = None,
) -> str:
    if idempotency_key is None or not idempotency_key.strip():
        raise IdempotencyKeyRequired("Send an Idempotency-Key header (e.g. a UUID v4).")
    return idempotency_key


IdempotencyKeyDep = Annotated[str, Depends(require_idempotency_key)]


def fingerprint(payload: Any) -> str:
    """A stable hash of a request body, to tell a retry from a different request."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Fingerprinted(Protocol):
    """A row written for one request: the fingerprint tells its retry from another
    request that reuses the key."""

    @property
    def request_fingerprint(self) -> str | None: ...


FingerprintedT = TypeVar("FingerprintedT", bound=Fingerprinted)


def same_request(
    existing: FingerprintedT | None, request_fingerprint: str, detail: str | None = None
) -> FingerprintedT | None:
    """The row an earlier request with this key wrote, when this request is that one
    again (None when there is none); ``IdempotencyKeyReused`` (``detail``) when the key
    was used for another request."""
    if existing is not None and existing.request_fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(detail)
    return existing


async def add_once(
    session: AsyncSession,
    row: FingerprintedT,
    twin: Callable[[], Awaitable[FingerprintedT | None]],
) -> FingerprintedT:
    """Write the new ``row``; when a concurrent request with the same key won (the
    unique index refused ``row``), its row (``twin()``) is the answer if it was the same
    request."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        found = await twin()
        if found is None or found.request_fingerprint != row.request_fingerprint:
            raise IdempotencyKeyReused() from None
        return found
    return row
