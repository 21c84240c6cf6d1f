"""The sandbox's Stripe: Connect Express accounts, their onboarding and login links."""

from __future__ import annotations

import copy
from typing import Any, Literal

from payments_sandbox import connect_objects, objects
from payments_sandbox.core import PageError, SandboxCore
from payments_sandbox.errors import invalid, missing_param, refused
from payments_sandbox.models import SandboxObject
from payments_sandbox.params import Params

ACCOUNT_LINK_TTL_SECONDS = 300


class ConnectAccounts(SandboxCore):
    """Connect Express accounts, their onboarding and login links."""

    async def create_account(self, p: Params) -> dict[str, Any]:
        account_type = p.text("type") or (
            "express" if p.text("controller.stripe_dashboard.type") == "express" else None
        )
        if account_type is None:
            raise missing_param("type")
        if account_type not in ("express", "custom", "standard"):
            raise invalid(f"Invalid type: {account_type}", param="type")
        capabilities = p.raw("capabilities")
        requested = (
            sorted(
                name
                for name, value in capabilities.items()
                if isinstance(value, dict) and value.get("requested") == "true"
            )
            if isinstance(capabilities, dict)
            else []
        )
        body = connect_objects.express_account(
            country=p.text("country"),
            email=p.text("email"),
            capabilities=requested,
            metadata=p.metadata(),
            business_type=p.text("business_type"),
        )
        body["type"] = account_type
        await self.objects.add("account", body, private={"links": {}})
        return body

    async def create_account_link(self, p: Params) -> dict[str, Any]:
        account_id = p.required_text("account")
        row = await self.load(account_id, "account", param="account")
        link_type = p.required_text("type")
        if link_type not in ("account_onboarding", "account_update"):
            raise invalid(f"Invalid type: {link_type}", param="type")
        if link_type == "account_update" and row.body["type"] == "express":
            raise invalid(
                "You cannot create `account_update` type Account Links for Express accounts.",
                param="type",
            )
        refresh_url = p.required_text("refresh_url")
        return_url = p.required_text("return_url")
        token = objects.random_tail(24)
        created = objects.now()
        private = copy.deepcopy(row.private)
        private.setdefault("links", {})[token] = {
            "refresh_url": refresh_url,
            "return_url": return_url,
            "expires_at": created + ACCOUNT_LINK_TTL_SECONDS,
            "used": False,
        }
        await self.objects.save(row, row.body, private)
        body = objects.template("account_link")
        body.update(
            created=created,
            expires_at=created + ACCOUNT_LINK_TTL_SECONDS,
            url=f"{self.base}/sandbox/onboarding/{account_id}?link={token}",
        )
        return body

    async def create_login_link(self, account_id: str) -> dict[str, Any]:
        row = await self.load(account_id, "account")
        if row.body["type"] != "express":
            raise invalid("Login links can only be created for Express accounts.", param="account")
        if not row.body.get("details_submitted"):
            raise refused(
                "Cannot create a login link for an account that has not completed onboarding.",
                code="account_invalid",
            )
        body = objects.template("login_link")
        body.update(
            created=objects.now(),
            url=f"{self.base}/sandbox/dashboard/{account_id}?login={objects.random_tail(12)}",
        )
        return body

    def onboarding_link(self, row: SandboxObject, token: str | None) -> dict[str, Any] | None:
        """The link's redirect URLs if it can still be used (unused, not expired)."""
        link = (row.private.get("links") or {}).get(token or "")
        if not isinstance(link, dict) or link.get("used"):
            return None
        if int(link.get("expires_at", 0)) < objects.now():
            return None
        return link

    def link_urls(self, row: SandboxObject, token: str | None) -> dict[str, Any] | None:
        """The link's redirect URLs, whether or not it can still be used."""
        link = (row.private.get("links") or {}).get(token or "")
        return link if isinstance(link, dict) else None

    async def finish_onboarding(
        self, account_id: str, token: str | None, outcome: Literal["enabled", "restricted", "later"]
    ) -> str:
        """The payee submitted the onboarding form; returns where to send the browser
        (the link's return_url). ``account.updated`` goes to the Connect endpoint."""
        row = await self.load(account_id, "account")
        link = self.onboarding_link(row, token)
        if link is None:
            raise PageError("This onboarding link has expired or was already used.")
        private = copy.deepcopy(row.private)
        private["links"][token]["used"] = True
        if outcome == "later":
            await self.objects.save(row, row.body, private)
            return str(link["return_url"])
        before = row.body
        after = connect_objects.onboarded(before, outcome)
        await self.objects.save(row, after, private)
        await self.emit(
            "account.updated",
            after,
            account=account_id,
            previous={
                key: before.get(key)
                for key in (
                    "charges_enabled",
                    "payouts_enabled",
                    "details_submitted",
                    "capabilities",
                    "requirements",
                )
                if before.get(key) != after.get(key)
            },
        )
        return str(link["return_url"])
