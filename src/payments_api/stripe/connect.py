"""Connect Express: accounts, account links, login links, transfers, payouts."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import Account, AccountLink, LoginLink


class ConnectCalls(GatewayBase):
    async def create_express_account(
        self,
        *,
        user_id: str,
        capabilities: list[str],
        country: str | None,
        idempotency_key: str,
    ) -> Account:
        """Create a user's Express connected account.

        Every parameter is derived from the user id and configuration (no email or other
        mutable profile data), so a retry with the same key always sends the same
        parameters and Stripe answers with the account it already created.
        """
        params: Any = {
            "type": "express",
            "metadata": {"user_id": user_id},
            "capabilities": {name: {"requested": True} for name in capabilities},
        }
        if country:
            params["country"] = country
        return await self._request(
            Account, "accounts.create", params=params, idempotency_key=idempotency_key
        )

    async def retrieve_account(self, account_id: str) -> Account:
        return await self._request(Account, "accounts.retrieve", account_id)

    async def create_account_onboarding_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> AccountLink:
        """A fresh single-use onboarding link. Never cached: each call is a new link."""
        return await self._request(
            AccountLink,
            "account_links.create",
            params={
                "account": account_id,
                "type": "account_onboarding",
                "refresh_url": refresh_url,
                "return_url": return_url,
            },
        )

    async def create_login_link(self, account_id: str) -> LoginLink:
        """A one-time Express dashboard login link."""
        return await self._request(LoginLink, "accounts.login_links.create", account_id)
