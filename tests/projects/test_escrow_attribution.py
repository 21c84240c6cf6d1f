"""An escrow may name only its payee's own project and one of that project's sessions:
a customer cannot book a job into another payee's earnings."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import Escrow
from tests.factories import fund
from tests.projects.conftest import create_project, new_customer, new_payee, open_session


async def _offer(
    client: httpx.AsyncClient, headers: dict[str, str], payee: str, **extra: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/escrows",
        json={"payee_id": payee, "amount": 5_000, "currency": "usd", "reference": "j", **extra},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )


async def _escrows(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Escrow)) or 0)


async def test_a_project_and_session_of_the_payee_are_accepted_others_are_not(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    payee, other = new_payee(), new_payee()
    for user in (payee, other):
        await client.get("/api/v1/me", headers=user.headers)  # first sight makes the user
    own = await create_project(client, payee)
    own_session = await open_session(client, payee, own)
    foreign = await create_project(client, other)
    foreign_session = await open_session(client, other, foreign)
    customer, headers = new_customer()
    await client.get("/api/v1/me", headers=headers)
    await fund(session, customer, 100_000)

    accepted = await _offer(client, headers, payee.id, project_id=own, session_id=own_session)
    assert accepted.status_code == 201, accepted.text
    assert (accepted.json()["project_id"], accepted.json()["session_id"]) == (own, own_session)

    before = await _escrows(session)
    cases = [
        ({"project_id": foreign}, "project_not_found"),
        ({"project_id": own, "session_id": foreign_session}, "session_not_found"),
        ({"session_id": own_session}, "project_not_found"),
        ({"project_id": "prj_²"}, "project_not_found"),
    ]
    for extra, code in cases:
        response = await _offer(client, headers, payee.id, **extra)
        assert response.status_code == 404, (extra, response.text)
        assert response.json()["code"] == code, extra
    assert await _escrows(session) == before
