"""Projects, sessions and the project wallet through the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from tests.helpers import auth
from tests.projects.conftest import (
    Payee,
    balance_object,
    create_project,
    enable_payouts,
    new_customer,
    new_payee,
    open_session,
    restrict_payouts,
)

PROJECTS = "/api/v1/me/projects"


def is_problem(response: httpx.Response, status: int, code: str) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
        and response.json()["code"] == code
    )


@pytest.fixture
def payee() -> Payee:
    return new_payee()


class TestProjects:
    async def test_create_get_list_update(self, client: httpx.AsyncClient, payee: Payee) -> None:
        created = await client.post(
            PROJECTS,
            json={"name": "Street food", "description": "Tacos", "currency": "eur"},
            headers=payee.headers,
        )
        assert created.status_code == 201, created.text
        project = created.json()
        assert project["id"].startswith("prj_")
        assert (project["object"], project["name"], project["description"]) == (
            "project",
            "Street food",
            "Tacos",
        )
        assert (project["currency"], project["status"], project["open_session_id"]) == (
            "eur",
            "active",
            None,
        )
        fetched = await client.get(f"{PROJECTS}/{project['id']}", headers=payee.headers)
        assert fetched.json() == project

        updated = await client.patch(
            f"{PROJECTS}/{project['id']}",
            json={"name": "Tacos truck", "description": None, "status": "archived"},
            headers=payee.headers,
        )
        assert updated.status_code == 200, updated.text
        body = updated.json()
        assert (body["name"], body["description"], body["status"]) == (
            "Tacos truck",
            None,
            "archived",
        )
        assert body["currency"] == "eur"  # fixed once created
        assert body["updated_at"] >= project["updated_at"]
        untouched = await client.patch(
            f"{PROJECTS}/{project['id']}", json={"status": "active"}, headers=payee.headers
        )
        assert (untouched.json()["name"], untouched.json()["status"]) == ("Tacos truck", "active")

    async def test_list_is_paginated_newest_first(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        ids = [await create_project(client, payee, name=f"p{i}") for i in range(5)]
        await create_project(client, new_payee(), name="someone else's")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["starting_after"] = cursor
            page = (await client.get(PROJECTS, params=params, headers=payee.headers)).json()
            pages += 1
            seen += [p["id"] for p in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["data"][-1]["id"]
        assert seen == list(reversed(ids))
        assert pages == 3

    async def test_another_users_project_is_not_found(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        project_id = await create_project(client, payee)
        intruder = new_payee()
        for method, path, body in [
            ("GET", f"{PROJECTS}/{project_id}", None),
            ("PATCH", f"{PROJECTS}/{project_id}", {"name": "mine now"}),
            ("POST", f"{PROJECTS}/{project_id}/sessions", {}),
            ("GET", f"{PROJECTS}/{project_id}/sessions", None),
        ]:
            response = await client.request(method, path, json=body, headers=intruder.headers)
            assert is_problem(response, 404, "project_not_found"), (method, path, response.text)
        listed = (await client.get(PROJECTS, headers=intruder.headers)).json()
        assert listed["data"] == []
        unchanged = (await client.get(f"{PROJECTS}/{project_id}", headers=payee.headers)).json()
        assert unchanged["name"] == "Live show"

    async def test_needs_the_payee_role(self, client: httpx.AsyncClient) -> None:
        _, customer = new_customer()
        create = await client.post(
            PROJECTS, json={"name": "x", "currency": "usd"}, headers=customer
        )
        assert is_problem(create, 403, "forbidden")
        assert is_problem(await client.get(PROJECTS, headers=customer), 403, "forbidden")
        assert is_problem(await client.get(PROJECTS), 401, "unauthorized")

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "", "currency": "usd"},
            {"name": "x" * 121, "currency": "usd"},
            {"name": "ok", "currency": "xyz"},
            {"name": "ok"},
        ],
        ids=["empty-name", "long-name", "unknown-currency", "no-currency"],
    )
    async def test_bad_input(
        self, client: httpx.AsyncClient, payee: Payee, body: dict[str, Any]
    ) -> None:
        response = await client.post(PROJECTS, json=body, headers=payee.headers)
        assert is_problem(response, 422, "validation_error")
        assert (await client.get(PROJECTS, headers=payee.headers)).json()["data"] == []

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"starting_after": "ses_1"}, {"starting_after": "x"}],
        ids=["limit-0", "limit-101", "wrong-prefix", "garbage"],
    )
    async def test_bad_page_params(
        self, client: httpx.AsyncClient, payee: Payee, params: dict[str, Any]
    ) -> None:
        response = await client.get(PROJECTS, params=params, headers=payee.headers)
        assert response.status_code == 422
        assert response.json()["code"] in ("validation_error", "invalid_cursor")


class TestSessions:
    async def test_open_close_and_one_open_at_a_time(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        project_id = await create_project(client, payee)
        opened = await client.post(
            f"{PROJECTS}/{project_id}/sessions", json={"title": "Night 1"}, headers=payee.headers
        )
        assert opened.status_code == 201, opened.text
        first = opened.json()
        assert (first["object"], first["project_id"], first["title"]) == (
            "project_session",
            project_id,
            "Night 1",
        )
        assert (first["status"], first["closed_at"]) == ("open", None)
        project = (await client.get(f"{PROJECTS}/{project_id}", headers=payee.headers)).json()
        assert project["open_session_id"] == first["id"]

        twice = await client.post(f"{PROJECTS}/{project_id}/sessions", headers=payee.headers)
        assert is_problem(twice, 409, "session_already_open")
        assert twice.json()["open_session_id"] == first["id"]

        close = f"{PROJECTS}/{project_id}/sessions/{first['id']}/close"
        closed = await client.post(close, headers=payee.headers)
        assert closed.status_code == 200, closed.text
        assert closed.json()["status"] == "closed"
        assert closed.json()["closed_at"] is not None
        again = await client.post(close, headers=payee.headers)
        assert again.json() == closed.json()  # closing a closed session changes nothing
        fetched = await client.get(
            f"{PROJECTS}/{project_id}/sessions/{first['id']}", headers=payee.headers
        )
        assert fetched.json() == closed.json()

        second = await client.post(f"{PROJECTS}/{project_id}/sessions", headers=payee.headers)
        assert second.status_code == 201, second.text
        assert second.json()["title"] is None
        listed = (
            await client.get(f"{PROJECTS}/{project_id}/sessions", headers=payee.headers)
        ).json()
        assert [s["id"] for s in listed["data"]] == [second.json()["id"], first["id"]]
        only_closed = (
            await client.get(
                f"{PROJECTS}/{project_id}/sessions",
                params={"status": "closed"},
                headers=payee.headers,
            )
        ).json()
        assert [s["id"] for s in only_closed["data"]] == [first["id"]]

    async def test_archived_project_opens_no_session(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        project_id = await create_project(client, payee)
        await client.patch(
            f"{PROJECTS}/{project_id}", json={"status": "archived"}, headers=payee.headers
        )
        response = await client.post(f"{PROJECTS}/{project_id}/sessions", headers=payee.headers)
        assert is_problem(response, 409, "project_archived")

    async def test_sessions_of_other_projects_are_not_found(
        self, client: httpx.AsyncClient, payee: Payee
    ) -> None:
        mine = await create_project(client, payee)
        other_owner = new_payee()
        theirs = await create_project(client, other_owner)
        their_session = await open_session(client, other_owner, theirs)
        for path in (
            f"{PROJECTS}/{mine}/sessions/{their_session}",
            f"{PROJECTS}/{mine}/sessions/ses_999999999",
            f"{PROJECTS}/{mine}/sessions/prj_1",
        ):
            response = await client.get(path, headers=payee.headers)
            assert is_problem(response, 404, "session_not_found"), path
        close = await client.post(
            f"{PROJECTS}/{theirs}/sessions/{their_session}/close", headers=payee.headers
        )
        assert is_problem(close, 404, "project_not_found")
        still_open = await client.get(
            f"{PROJECTS}/{theirs}/sessions/{their_session}", headers=other_owner.headers
        )
        assert still_open.json()["status"] == "open"

    async def test_concurrent_opens_leave_one_session_open(
        self, committed_client: httpx.AsyncClient
    ) -> None:
        payee = new_payee()
        project_id = await create_project(committed_client, payee)
        responses = await asyncio.gather(
            *(
                committed_client.post(f"{PROJECTS}/{project_id}/sessions", headers=payee.headers)
                for _ in range(8)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 7, [r.text for r in responses]
        assert all(r.json()["code"] == "session_already_open" for r in responses if r.is_error)
        listed = (
            await committed_client.get(f"{PROJECTS}/{project_id}/sessions", headers=payee.headers)
        ).json()
        assert len(listed["data"]) == 1


class TestProjectWallet:
    async def test_owner_sees_balance_earnings_and_payout_account(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        project_id = await create_project(client, payee)
        await open_session(client, payee, project_id)
        await enable_payouts(client, payee)
        route = stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(
                200,
                json=balance_object(
                    available=[(12_345, "usd"), (500, "eur")], pending=[(2_000, "usd")]
                ),
            )
        )
        response = await client.get(f"{PROJECTS}/{project_id}/wallet", headers=payee.headers)
        assert response.status_code == 200, response.text
        request = route.calls.last.request
        assert request.url.path == "/v1/balance"
        assert request.headers["Stripe-Account"] == payee.account_id
        wallet = response.json()
        assert (wallet["object"], wallet["scope"], wallet["project_id"]) == (
            "project_wallet",
            "account_level",
            project_id,
        )
        assert wallet["balance"] == {
            "available": [
                {"amount": 500, "currency": "eur"},
                {"amount": 12_345, "currency": "usd"},
            ],
            "pending": [{"amount": 2_000, "currency": "usd"}],
        }
        assert wallet["earnings"] == {
            "currency": "usd",
            "payment_count": 0,
            "paid_request_count": 0,
            "tip_count": 0,
            "total_tip_amount_cents": 0,
            "total_request_amount_cents": 0,
            "total_earned_amount_cents": 0,
            "last_paid_at": None,
            "session_count": 1,
        }
        account = wallet["payout_account"]
        assert (account["status"], account["setup_complete"]) == ("enabled", True)
        assert account["stripe_account_id"] == payee.account_id

    async def test_without_payout_account_balances_are_empty(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        route = stripe_mock.get("/v1/balance")
        project_id = await create_project(client, payee)
        response = await client.get(f"{PROJECTS}/{project_id}/wallet", headers=payee.headers)
        assert response.status_code == 200, response.text
        wallet = response.json()
        assert wallet["balance"] == {"available": [], "pending": []}
        assert wallet["payout_account"]["status"] == "not_started"
        assert wallet["payout_account"]["setup_complete"] is False
        assert route.call_count == 0

    async def test_account_still_onboarding_shows_its_balance_and_status(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        project_id = await create_project(client, payee)
        await restrict_payouts(client, payee)
        stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=balance_object([(0, "usd")], [(0, "usd")]))
        )
        wallet = (await client.get(f"{PROJECTS}/{project_id}/wallet", headers=payee.headers)).json()
        assert wallet["payout_account"]["status"] == "pending"
        assert wallet["payout_account"]["status_reason"] == "requirements_due"
        assert wallet["balance"]["available"] == [{"amount": 0, "currency": "usd"}]

    @pytest.mark.parametrize("suffix", ["/wallet", "/wallet/sessions"])
    async def test_only_the_owner_gets_in(
        self,
        client: httpx.AsyncClient,
        stripe_mock: respx.MockRouter,
        payee: Payee,
        suffix: str,
    ) -> None:
        route = stripe_mock.get("/v1/balance")
        project_id = await create_project(client, payee)
        await enable_payouts(client, payee)
        path = f"{PROJECTS}/{project_id}{suffix}"

        other_payee = new_payee()
        await create_project(client, other_payee)
        denied = await client.get(path, headers=other_payee.headers)
        assert is_problem(denied, 403, "project_forbidden")
        assert payee.account_id not in denied.text

        _, customer = new_customer()
        assert is_problem(await client.get(path, headers=customer), 403, "forbidden")
        # an admin is not the owner either
        assert is_problem(
            await client.get(path, headers=auth("admin-1", ["admin", "payee"])),
            403,
            "project_forbidden",
        )
        assert is_problem(await client.get(path), 401, "unauthorized")
        assert is_problem(
            await client.get(path, headers={"Authorization": "Bearer not-a-jwt"}),
            401,
            "invalid_token",
        )
        for missing in ("prj_999999999", "nonsense"):
            response = await client.get(f"{PROJECTS}/{missing}{suffix}", headers=payee.headers)
            assert is_problem(response, 404, "project_not_found")
        assert route.call_count == 0

    async def test_stripe_down_is_a_503_problem(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, payee: Payee
    ) -> None:
        project_id = await create_project(client, payee)
        await enable_payouts(client, payee)
        stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(
                500, json={"error": {"type": "api_error", "message": "secret internals"}}
            )
        )
        response = await client.get(f"{PROJECTS}/{project_id}/wallet", headers=payee.headers)
        assert is_problem(response, 503, "payment_provider_unavailable")
        assert response.headers["Retry-After"]
        assert "secret internals" not in response.text


class TestWalletSessions:
    async def test_paginated_newest_first(self, client: httpx.AsyncClient, payee: Payee) -> None:
        project_id = await create_project(client, payee)
        ids = []
        for _ in range(5):
            session_id = await open_session(client, payee, project_id)
            ids.append(session_id)
            if len(ids) < 5:  # the newest stays open
                closed = await client.post(
                    f"{PROJECTS}/{project_id}/sessions/{session_id}/close",
                    headers=payee.headers,
                )
                assert closed.status_code == 200
        path = f"{PROJECTS}/{project_id}/wallet/sessions"
        first = (await client.get(path, params={"limit": 2}, headers=payee.headers)).json()
        assert [s["id"] for s in first["data"]] == [ids[4], ids[3]]
        assert first["has_more"] is True
        assert first["data"][0]["status"] == "open"
        assert first["data"][1]["status"] == "closed"
        assert all(
            s["paid_request_count"] == 0 and s["total_tip_amount_cents"] == 0 for s in first["data"]
        )
        second = (
            await client.get(
                path, params={"limit": 2, "starting_after": ids[3]}, headers=payee.headers
            )
        ).json()
        assert [s["id"] for s in second["data"]] == [ids[2], ids[1]]
        assert second["has_more"] is True
        last = (
            await client.get(
                path, params={"limit": 2, "starting_after": ids[1]}, headers=payee.headers
            )
        ).json()
        assert [s["id"] for s in last["data"]] == [ids[0]]
        assert last["has_more"] is False
        default = (await client.get(path, headers=payee.headers)).json()
        assert len(default["data"]) == 5
        assert default["has_more"] is False
        open_only = (
            await client.get(path, params={"status": "open"}, headers=payee.headers)
        ).json()
        assert [s["id"] for s in open_only["data"]] == [ids[4]]

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"limit": 0}, "validation_error"),
            ({"limit": 101}, "validation_error"),
            ({"limit": "ten"}, "validation_error"),
            ({"status": "paused"}, "validation_error"),
            ({"starting_after": "prj_1"}, "invalid_cursor"),
        ],
    )
    async def test_bad_params_are_422_problems(
        self, client: httpx.AsyncClient, payee: Payee, params: dict[str, Any], code: str
    ) -> None:
        project_id = await create_project(client, payee)
        response = await client.get(
            f"{PROJECTS}/{project_id}/wallet/sessions", params=params, headers=payee.headers
        )
        assert is_problem(response, 422, code)
