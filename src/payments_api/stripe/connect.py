"""Connect Express: accounts, account links, login links, transfers, payouts."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import Account


class ConnectCalls(GatewayBase):
    async def create_express_account(
        self,
        *,
        user_id: str,
        capabilities: list[str],
        country: str | None,
        idempotency_key: str,
    ) -> dict[str, Any]:
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
        account = await self._call(
            "accounts.create",
            lambda: self._client.v1.accounts.create_async(
                params=params, options=self._options(idempotency_key)
            ),
        )
        return account.to_dict()

    async def retrieve_account(self, account_id: str) -> Account:
        account = await self._call(
            "accounts.retrieve",
            lambda: self._client.v1.accounts.retrieve_async(account_id),
        )
        return self._typed("accounts.retrieve", Account, account)

    async def create_account_onboarding_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> dict[str, Any]:
        """A fresh single-use onboarding link. Never cached: each call is a new link."""
        link = await self._call(
            "account_links.create",
            lambda: self._client.v1.account_links.create_async(
                params={
                    "account": account_id,
                    "type": "account_onboarding",
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                }
            ),
        )
        return link.to_dict()

    async def create_login_link(self, account_id: str) -> dict[str, Any]:
        """A one-time Express dashboard login link."""
        link = await self._call(
            "accounts.login_links.create",
            lambda: self._client.v1.accounts.login_links.create_async(account_id),
        )
        return link.to_dict()
