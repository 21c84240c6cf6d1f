from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.auth import TokenVerifier
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway


@dataclass(slots=True)
class AppState:
    """What the lifespan builds and disposes; handed to requests through dependencies."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    stripe: StripeGateway
    verifier: TokenVerifier
    migration_heads: frozenset[str]
