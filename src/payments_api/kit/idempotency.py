"""The ``Idempotency-Key`` header, as money-moving routes receive it."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Depends, Header

from payments_api.problems import ProblemError


class IdempotencyKeyRequired(ProblemError):
    status = 400
    code = "idempotency_key_required"
    title = "An Idempotency-Key header is required"


class IdempotencyKeyReused(ProblemError):
    status = 422
    code = "idempotency_key_reused"
    title = "The Idempotency-Key was used for a different request"


def require_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Unique per logical operation (e.g. a UUID); retries reuse it.",
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
