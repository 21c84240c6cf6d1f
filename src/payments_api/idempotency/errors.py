"""Problems of the Idempotency-Key protocol.

They are defined in :mod:`payments_api.kit.idempotency` next to the header's dependency,
because other domains raise them too (a service-level replay check); re-exported here
for this domain's own modules.
"""

from __future__ import annotations

from payments_api.kit.idempotency import (
    IdempotencyKeyInUse,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
)

__all__ = ["IdempotencyKeyInUse", "IdempotencyKeyRequired", "IdempotencyKeyReused"]
