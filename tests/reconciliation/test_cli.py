"""``payments-api reconcile`` against the test database, Stripe answered by respx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from typer.testing import CliRunner

from payments_api.cli import app
from payments_api.settings import get_settings
from tests.conftest import STRIPE_API
from tests.helpers import stripe_object

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
# A day nobody else reconciles: these runs commit.
DAY = date(2020, 1, 15)


def empty_list(url: str) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [], "has_more": False, "url": url})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    monkeypatch.chdir(REPO / "tests")  # no .env from the working tree
    for name, value in {
        "PAYMENTS_ENVIRONMENT": "test",
        "PAYMENTS_DATABASE_URL": database_url,
        "PAYMENTS_STRIPE_SECRET_KEY": "sk_test_123",
        "PAYMENTS_STRIPE_API_BASE": STRIPE_API,
        "PAYMENTS_STRIPE_MAX_NETWORK_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class TestReconcileCommand:
    def test_runs_a_day_and_reruns_it_in_place(
        self, cli_env: None, stripe_mock: respx.MockRouter
    ) -> None:
        balance = stripe_object("balance")
        stripe_mock.get("/v1/balance").mock(return_value=httpx.Response(200, json=balance))
        transactions = stripe_mock.get("/v1/balance_transactions").mock(
            return_value=empty_list("/v1/balance_transactions")
        )
        stripe_mock.get("/v1/events").mock(return_value=empty_list("/v1/events"))

        first = runner.invoke(app, ["reconcile", "--date", DAY.isoformat()])
        second = runner.invoke(app, ["reconcile", "--date", DAY.isoformat()])

        assert first.exit_code == 0, first.output
        assert second.exit_code == 0, second.output
        one: dict[str, Any] = json.loads(first.stdout)
        two: dict[str, Any] = json.loads(second.stdout)
        assert (one["date"], one["status"], one["trigger"]) == (DAY.isoformat(), "completed", "cli")
        assert two["id"] == one["id"]
        assert two["attempts"] == one["attempts"] + 1
        assert transactions.call_count == 2
        assert transactions.calls.last.request.headers["Authorization"] == "Bearer sk_test_123"

    def test_mismatches_exit_1(self, cli_env: None, stripe_mock: respx.MockRouter) -> None:
        stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=stripe_object("balance"))
        )
        unknown = stripe_object("balance_transaction")
        unknown.update(
            id="txn_cli_unknown",
            type="refund",
            amount=-100,
            fee=0,
            net=-100,
            source="re_cli_unknown",
            created=int(datetime(2020, 1, 16, 12, tzinfo=UTC).timestamp()),
        )
        stripe_mock.get("/v1/balance_transactions").mock(
            return_value=httpx.Response(
                200,
                json={"object": "list", "data": [unknown], "has_more": False, "url": "/v1/x"},
            )
        )
        stripe_mock.get("/v1/events").mock(return_value=empty_list("/v1/events"))

        result = runner.invoke(app, ["reconcile", "--date", "2020-01-16"])

        assert result.exit_code == 1, result.output
        run = json.loads(result.stdout)
        assert [(m["kind"], m["stripe_object_id"]) for m in run["mismatches"]] == [
            ("missing_in_ledger", "re_cli_unknown")
        ]

    def test_bad_date_and_stripe_down_exit_2(
        self, cli_env: None, stripe_mock: respx.MockRouter
    ) -> None:
        assert runner.invoke(app, ["reconcile", "--date", "15/01/2020"]).exit_code == 2
        stripe_mock.get("/v1/balance").mock(return_value=httpx.Response(500, json={}))
        result = runner.invoke(app, ["reconcile", "--date", "2020-01-17"])
        assert result.exit_code == 2
        assert "payment_provider_unavailable" in result.output
