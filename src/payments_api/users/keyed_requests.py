"""How a write that keeps its Idempotency-Key on its own row (a withdrawal, a refund, a
cash-out, a wallet payment) begins: the caller's user row, then the row an earlier
request with the same key wrote, if this request is that one again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal
from payments_api.kit.idempotency import Fingerprinted, fingerprint, same_request
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

KeyedRowT = TypeVar("KeyedRowT", bound=Fingerprinted)


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A request's Idempotency-Key, its body's fingerprint, and the detail a reuse of the
    key for another request is refused with (``IdempotencyKeyReused``)."""

    key: str
    fingerprint: str
    reused_detail: str

    @classmethod
    def of(cls, body: BaseModel, key: str, reused_detail: str) -> KeyedRequest:
        return cls(key, fingerprint(body.model_dump(mode="json")), reused_detail)

    async def caller_and_earlier(
        self,
        session: AsyncSession,
        principal: Principal,
        by_key: Callable[[str, str], Awaitable[KeyedRowT | None]],
    ) -> tuple[User, KeyedRowT | None]:
        """The caller's user row (created on first sight) and the row ``by_key`` (user
        id, key) finds when this request came before (None: it is new).

        Raises ``IdempotencyKeyReused`` when the key was used for another request."""
        user = await UserRepository(session).upsert_from_principal(principal)
        earlier = await by_key(user.id, self.key)
        return user, same_request(earlier, self.fingerprint, self.reused_detail)
