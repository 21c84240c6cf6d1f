"""Reconciliation runs through the admin API on a seeded day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry
from payments_api.reconciliation.models import ReconciliationMismatch
from tests.helpers import auth, make_event, stripe_object
from tests.reconciliation.conftest import CURRENCY, SeededDay, StripeDay, day_bounds
from tests.refunds.helpers import ADMIN, deliver

RUNS = "/api/v1/admin/reconciliation/runs"
GRACE = timedelta(minutes=360)


async def reconcile(client: httpx.AsyncClient, seeded: SeededDay) -> dict[str, Any]:
    response = await client.post(RUNS, json={"date": seeded.day.isoformat()}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ours(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The run's mismatches in this test's currency (committed entries of other tests
    live in other currencies)."""
    return sorted(
        (m["kind"], m["object_type"], m["stripe_object_id"])
        for m in run["mismatches"]
        if m["currency"] == CURRENCY
    )


async def remove_ledger_entry(session: AsyncSession, cause_key: str) -> None:
    """Deliberate corruption, as only a superuser could do it: the append-only triggers
    are bypassed for the delete (the test's transaction is rolled back afterwards)."""
    await session.execute(text("SET LOCAL session_replication_role = replica"))
    select_ids = text("SELECT id FROM ledger_transactions WHERE cause_key = :key")
    [transaction_id] = (await session.execute(select_ids, {"key": cause_key})).scalars().all()
    await session.execute(
        text("DELETE FROM ledger_postings WHERE transaction_id = :id"), {"id": transaction_id}
    )
    await session.execute(
        text("DELETE FROM ledger_transactions WHERE id = :id"), {"id": transaction_id}
    )
    await session.execute(text("SET LOCAL session_replication_role = origin"))
    await session.flush()


class TestReconciliationRun:
    async def test_seeded_day_matches_every_object(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        run = await reconcile(client, seeded_day)

        assert run["status"] == "completed"
        assert run["date"] == seeded_day.day.isoformat()
        assert run["trigger"] == "api"
        assert ours(run) == []
        [snapshot] = [s for s in run["snapshots"] if s["currency"] == CURRENCY]
        # charge, fee, refund, dispute, transfer; the payout to the bank is excluded
        assert snapshot["stripe_day_net"] == 10_000 - 320 - 2_000 - 3_500 - 1_500
        assert snapshot["ledger_day_net"] == snapshot["stripe_day_net"]
        assert snapshot["stripe_excluded_net"] == -4_000
        assert snapshot["ledger_unattributed_net"] == -5
        assert snapshot["stripe_available"] == 12_345
        assert snapshot["balance_difference"] == 12_345 - snapshot["ledger_balance"]
        assert run["stripe_transaction_count"] >= 5

        # Stripe was read for the day plus the grace period, every page of it.
        start, end = day_bounds(seeded_day.day)
        calls = stripe_day.routes["transactions"].calls
        assert len(calls) == 3
        first = calls[0].request.url.params
        assert first["created[gte]"] == str(start - int(GRACE.total_seconds()))
        assert first["created[lt]"] == str(end + int(GRACE.total_seconds()))
        assert first["limit"] == "100"
        assert first["expand[0]"] == "data.source"
        assert calls[1].request.url.params["starting_after"] == seeded_day.transactions[1]["id"]
        events = stripe_day.routes["events"].calls.last.request.url.params
        assert events["delivery_success"] == "false"
        assert (events["created[gte]"], events["created[lt]"]) == (str(start), str(end))

    async def test_removed_entry_added_transaction_changed_amount_are_exactly_listed(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        clean = await reconcile(client, seeded_day)
        assert ours(clean) == []

        await remove_ledger_entry(session, f"stripe:refund:{seeded_day.sid('re')}")
        ghost = dict(stripe_day.transactions[1])
        ghost.update(id=seeded_day.sid("txn_ghost"), source=seeded_day.sid("re_ghost"))
        stripe_day.transactions.insert(2, ghost)
        dispute = stripe_day.transactions[3]
        dispute.update(amount=-2_100, net=-3_600)

        broken = await reconcile(client, seeded_day)

        assert broken["id"] == clean["id"]  # one run per day, replaced
        assert broken["attempts"] == clean["attempts"] + 1
        assert ours(broken) == [
            ("amount_differs", "dispute", seeded_day.sid("dp")),
            ("missing_in_ledger", "refund", seeded_day.sid("re")),
            ("missing_in_ledger", "refund", seeded_day.sid("re_ghost")),
        ]
        differs = next(m for m in broken["mismatches"] if m["kind"] == "amount_differs")
        assert (differs["stripe_amount"], differs["ledger_amount"]) == (-3_600, -3_500)
        assert differs["balance_transaction_ids"] == [seeded_day.sid("txn_dp")]
        assert broken["mismatch_count"] == len(broken["mismatches"])

        # A rerun recomputes the same result; nothing piles up.
        again = await reconcile(client, seeded_day)
        assert ours(again) == ours(broken)
        stored = await session.scalar(
            select(text("count(*)"))
            .select_from(ReconciliationMismatch)
            .where(ReconciliationMismatch.run_id == int(again["id"].removeprefix("rec_")))
        )
        assert stored == again["mismatch_count"]

    async def test_entry_stripe_does_not_know_is_missing_at_stripe(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        stripe_day.transactions[:] = [t for t in stripe_day.transactions if t["type"] != "transfer"]

        run = await reconcile(client, seeded_day)

        assert ours(run) == [("missing_at_stripe", "transfer", seeded_day.sid("tr"))]
        [mismatch] = [m for m in run["mismatches"] if m["currency"] == CURRENCY]
        assert (mismatch["stripe_amount"], mismatch["ledger_amount"]) == (None, -1_500)
        assert len(mismatch["ledger_transaction_ids"]) == 1

    async def test_undelivered_events_are_listed_with_their_inbox_state(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        stored = make_event("customer.created", stripe_object("customer"))
        assert (await deliver(client, stored)).json()["status"] == "ignored"
        missing = make_event("charge.refunded", stripe_object("charge"))
        stripe_day.undelivered = [stored, missing]

        run = await reconcile(client, seeded_day)

        assert [(e["id"], e["in_inbox"], e["inbox_status"]) for e in run["undelivered_events"]] == [
            (stored["id"], True, "ignored"),
            (missing["id"], False, None),
        ]

    async def test_runs_are_listed_read_and_audited(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        run = await reconcile(client, seeded_day)

        listed = await client.get(RUNS, headers=ADMIN)
        assert listed.status_code == 200
        assert run["id"] in [r["id"] for r in listed.json()["data"]]
        got = await client.get(f"{RUNS}/{run['id']}", headers=ADMIN)
        assert got.json() == run
        missing = await client.get(f"{RUNS}/rec_999999999", headers=ADMIN)
        assert (missing.status_code, missing.json()["code"]) == (
            404,
            "reconciliation_run_not_found",
        )
        entry = await session.scalar(
            select(AuditLogEntry).where(
                AuditLogEntry.action == "reconciliation.run", AuditLogEntry.target_id == run["id"]
            )
        )
        assert entry is not None
        assert entry.actor_id == "admin_1"
        assert entry.after is not None
        assert entry.after["mismatch_count"] == run["mismatch_count"]

    async def test_guards(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        future = (seeded_day.day + timedelta(days=2)).isoformat()
        response = await client.post(RUNS, json={"date": future}, headers=ADMIN)
        assert (response.status_code, response.json()["code"]) == (
            422,
            "reconciliation_date_in_future",
        )
        customer = await client.post(
            RUNS, json={"date": seeded_day.day.isoformat()}, headers=auth("someone")
        )
        assert customer.status_code == 403
        assert not stripe_day.routes["transactions"].called

    async def test_stripe_down_fails_the_run_and_a_rerun_completes_it(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        stripe_day.routes["balance"].mock(return_value=httpx.Response(500, json={}))
        failed = await client.post(RUNS, json={"date": seeded_day.day.isoformat()}, headers=ADMIN)
        assert failed.status_code == 503
        listed = (await client.get(RUNS, headers=ADMIN)).json()["data"]
        run = next(r for r in listed if r["date"] == seeded_day.day.isoformat())
        assert (run["status"], run["error_code"]) == ("failed", "payment_provider_unavailable")

        stripe_day.routes["balance"].mock(
            side_effect=lambda _r: httpx.Response(200, json=stripe_day.balance)
        )
        rerun = await reconcile(client, seeded_day)
        assert (rerun["id"], rerun["status"], rerun["attempts"]) == (run["id"], "completed", 2)


class TestRunDate:
    async def test_a_date_that_is_not_yyyy_mm_dd_is_422(self, client: httpx.AsyncClient) -> None:
        """Found by schemathesis: ``{"date": 0}`` (a Unix timestamp) was taken as
        1970-01-01 though the spec declares ``format: date``."""
        for date in (0, "0", 86400, "2026-1-2", "20260102"):
            response = await client.post(RUNS, json={"date": date}, headers=ADMIN)
            assert response.status_code == 422, (date, response.text)
            assert response.json()["code"] == "validation_error"
