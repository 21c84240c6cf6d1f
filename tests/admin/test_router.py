from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry
from payments_api.ledger.models import LedgerPosting, LedgerTransaction
from payments_api.users.models import User
from tests.factories import create_user, fund
from tests.helpers import auth

ADMIN = auth("admin-1", ["admin"])


async def _postings_of(session: AsyncSession, user_id: str) -> int:
    """Postings on the user's own accounts (other tests post to shared ones meanwhile)."""
    count = await session.scalar(
        text(
            "SELECT count(*) FROM ledger_postings p"
            " JOIN ledger_accounts a ON a.id = p.account_id WHERE a.owner_user_id = :user"
        ),
        {"user": user_id},
    )
    return int(count or 0)


def _adjustment(user_id: str, amount: float, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "currency": "usd",
        "reason": "Goodwill credit",
        "postings": [
            {"account": {"user_id": user_id, "kind": "available"}, "amount": amount},
            {"account": {"kind": "adjustments"}, "amount": -amount},
        ],
    }
    body.update(overrides)
    return body


async def _written(session: AsyncSession) -> tuple[int, int, int]:
    counts = []
    for model in (LedgerTransaction, LedgerPosting, AuditLogEntry):
        counts.append(int(await session.scalar(select(func.count()).select_from(model)) or 0))
    return (counts[0], counts[1], counts[2])


class TestAdjustments:
    async def test_adjustment_is_posted_audited_and_replayable(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await create_user(session, id="adj-user")
        headers = {**ADMIN, "Idempotency-Key": "adj-1"}
        response = await client.post(
            "/api/v1/admin/adjustments", json=_adjustment("adj-user", 500), headers=headers
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["type"] == "adjustment"
        assert body["description"] == "Goodwill credit"
        balance = await client.get("/api/v1/me/balance", headers=auth("adj-user"))
        assert balance.json()["balances"][0]["available"] == 500

        audit = await session.scalar(
            select(AuditLogEntry).where(AuditLogEntry.target_id == body["id"])
        )
        assert audit is not None
        assert audit.actor_id == "admin-1"
        assert audit.action == "ledger.adjustment"
        assert audit.before is not None
        assert audit.after is not None
        assert audit.before["balances"]["user:adj-user:available:usd"] == 0
        assert audit.after["balances"]["user:adj-user:available:usd"] == 500
        platform = "platform:adjustments:usd"
        assert audit.after["balances"][platform] == audit.before["balances"][platform] - 500

        written = await _written(session)
        replay = await client.post(
            "/api/v1/admin/adjustments", json=_adjustment("adj-user", 500), headers=headers
        )
        assert replay.status_code == 201
        assert replay.json() == body
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert await _written(session) == written

        reused = await client.post(
            "/api/v1/admin/adjustments", json=_adjustment("adj-user", 600), headers=headers
        )
        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
        assert await _written(session) == written

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (_adjustment("adj-bad", 10.5), 422, "validation_error"),
            (_adjustment("adj-bad", 0), 422, "invalid_posting"),
            (_adjustment("adj-bad", 500, currency="xyz"), 422, "validation_error"),
            (_adjustment("adj-bad", 500, reason=""), 422, "validation_error"),
            (
                _adjustment(
                    "adj-bad",
                    500,
                    postings=[
                        {"account": {"user_id": "adj-bad", "kind": "available"}, "amount": 500},
                        {"account": {"kind": "adjustments"}, "amount": -499},
                    ],
                ),
                422,
                "unbalanced_transaction",
            ),
            (_adjustment("no-such-user", 500), 404, "user_not_found"),
            (_adjustment("adj-bad", -500), 402, "insufficient_funds"),
            (
                _adjustment(
                    "adj-bad",
                    500,
                    postings=[
                        {"account": {"user_id": "adj-bad", "kind": "platform_fees"}, "amount": 5},
                        {"account": {"kind": "adjustments"}, "amount": -5},
                    ],
                ),
                422,
                "invalid_posting",
            ),
        ],
    )
    async def test_bad_adjustments_write_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        body: dict[str, Any],
        status: int,
        code: str,
    ) -> None:
        await create_user(session, id="adj-bad")
        written = await _written(session)
        response = await client.post(
            "/api/v1/admin/adjustments", json=body, headers={**ADMIN, "Idempotency-Key": "k"}
        )
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert response.headers["content-type"] == "application/problem+json"
        assert await _written(session) == written

    async def test_idempotency_key_required(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/admin/adjustments", json=_adjustment("x", 1), headers=ADMIN
        )
        assert response.status_code == 400
        assert response.json()["code"] == "idempotency_key_required"

    async def test_admin_role_required(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/admin/adjustments",
            json=_adjustment("x", 1),
            headers={**auth("not-admin", ["customer"]), "Idempotency-Key": "k"},
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


class TestFreeze:
    async def test_freeze_unfreeze_audited(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await create_user(session, id="freeze-me")
        frozen = await client.post(
            "/api/v1/admin/wallets/freeze-me/freeze",
            json={"reason": "chargeback risk"},
            headers=ADMIN,
        )
        assert frozen.json() == {
            "user_id": "freeze-me",
            "frozen": True,
            "frozen_reason": "chargeback risk",
        }
        again = await client.post(
            "/api/v1/admin/wallets/freeze-me/freeze",
            json={"reason": "chargeback risk"},
            headers=ADMIN,
        )
        assert again.status_code == 200
        me = await client.get("/api/v1/me/balance", headers=auth("freeze-me"))
        assert me.json()["frozen"] is True
        thawed = await client.post("/api/v1/admin/wallets/freeze-me/unfreeze", headers=ADMIN)
        assert thawed.json()["frozen"] is False
        log = (await client.get("/api/v1/admin/audit-log", headers=ADMIN)).json()
        actions = [(e["action"], e["target_id"]) for e in log["data"]]
        assert actions[:2] == [("wallet.unfreeze", "freeze-me"), ("wallet.freeze", "freeze-me")]
        assert log["data"][1]["before"] == {"frozen": False, "frozen_reason": None}
        assert log["data"][1]["after"] == {"frozen": True, "frozen_reason": "chargeback risk"}
        user = await session.get(User, "freeze-me", populate_existing=True)
        assert user is not None
        assert user.frozen is False

    async def test_missing_user(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/admin/wallets/ghost/freeze", json={"reason": "x" * 5}, headers=ADMIN
        )
        assert response.status_code == 404
        assert response.json()["code"] == "user_not_found"

    async def test_funds_untouched_by_freeze(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await create_user(session, id="frozen-funds", roles=["customer"])
        await create_user(session, id="frozen-funds-payee", roles=["payee"])
        await fund(session, user.id, 1_000)
        postings = await _postings_of(session, "frozen-funds")
        frozen = await client.post(
            "/api/v1/admin/wallets/frozen-funds/freeze", json={"reason": "review"}, headers=ADMIN
        )
        assert frozen.status_code == 200, frozen.text
        # The freeze happened: recorded on the user, and in force for money going out.
        frozen_user = await session.get(User, "frozen-funds", populate_existing=True)
        assert frozen_user is not None
        assert (frozen_user.frozen, frozen_user.frozen_reason) == (True, "review")
        offer = await client.post(
            "/api/v1/escrows",
            json={
                "payee_id": "frozen-funds-payee",
                "amount": 500,
                "currency": "usd",
                "reference": "while frozen",
            },
            headers={**auth("frozen-funds", ["customer"]), "Idempotency-Key": "frozen-offer"},
        )
        assert offer.status_code == 409, offer.text
        assert offer.json()["code"] == "wallet_frozen"
        # ...and the money itself was not touched by freezing: no posting, same balance.
        balance = await client.get("/api/v1/me/balance", headers=auth("frozen-funds"))
        assert balance.json()["frozen"] is True
        assert [
            (b["currency"], b["available"], b["escrow"]) for b in balance.json()["balances"]
        ] == [("usd", 1_000, 0)]
        assert await _postings_of(session, "frozen-funds") == postings


class TestAuditLogFilters:
    async def test_filters_by_action_and_target(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        for user in ("aud-a", "aud-b"):
            await create_user(session, id=user)
            await client.post(
                f"/api/v1/admin/wallets/{user}/freeze", json={"reason": "review"}, headers=ADMIN
            )
        await client.post("/api/v1/admin/wallets/aud-a/unfreeze", headers=ADMIN)
        by_target = (
            await client.get("/api/v1/admin/audit-log?target_id=aud-a", headers=ADMIN)
        ).json()["data"]
        assert [e["action"] for e in by_target] == ["wallet.unfreeze", "wallet.freeze"]
        freezes = (
            await client.get(
                "/api/v1/admin/audit-log?action=wallet.freeze&actor_id=admin-1", headers=ADMIN
            )
        ).json()["data"]
        assert {e["target_id"] for e in freezes} == {"aud-a", "aud-b"}
        assert all(e["action"] == "wallet.freeze" for e in freezes)
