"""Per-currency limits of top-ups, wallet debits and withdrawals: the built-in table,
configuration, refusals and what OpenAPI shows."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from pydantic import ValidationError

from payments_api.main import create_app
from payments_api.money import AmountLimits
from payments_api.settings import Settings
from tests.helpers import auth

PAYEE = ["payee"]


def configured(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestTable:
    def test_built_in_limits_are_in_each_currencys_major_unit(self) -> None:
        settings = configured()
        assert settings.limits("usd", "topup") == AmountLimits(1_000, 1_000_000)
        assert settings.limits("eur", "withdrawal") == AmountLimits(1_000, 1_000_000)
        assert settings.limits("gbp", "debit") == AmountLimits(1, 1_000_000)
        assert settings.limits("jpy", "topup") == AmountLimits(50, 1_000_000)  # ¥50-¥1,000,000
        assert settings.limits("jpy", "withdrawal") == AmountLimits(1_000, 1_000_000)
        assert settings.limits("kwd", "topup") == AmountLimits(3_000, 3_000_000)  # 3.000 KWD
        assert settings.limits("cad", "topup") is None

    def test_environment_adds_a_currency_and_replaces_another(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        table = {
            "nok": {
                "topup": {"min": "100", "max": "100000"},
                "debit": {"min": "0.5", "max": "100000"},
                "withdrawal": {"min": "100", "max": "50000"},
            },
            "jpy": {
                "topup": {"min": 100, "max": 500000},
                "debit": {"min": 1, "max": 500000},
                "withdrawal": {"min": 1000, "max": 500000},
            },
        }
        monkeypatch.setenv("PAYMENTS_AMOUNT_LIMITS", json.dumps(table))
        settings = configured()
        assert settings.limits("nok", "debit") == AmountLimits(50, 10_000_000)
        assert settings.limits("nok", "withdrawal") == AmountLimits(10_000, 5_000_000)
        assert settings.limits("jpy", "topup") == AmountLimits(100, 500_000)
        assert settings.limits("usd", "topup") == AmountLimits(1_000, 1_000_000)

    @pytest.mark.parametrize(
        "table",
        [
            {"NOK": {}},  # not lower case (and incomplete)
            {"nok": {"topup": {"min": "10", "max": "5"}}},
            {
                "usd": {
                    "topup": {"min": "10", "max": "5"},
                    "debit": {"min": "1", "max": "5"},
                    "withdrawal": {"min": "1", "max": "5"},
                }
            },
            {
                "jpy": {
                    "topup": {"min": "0.5", "max": "5"},
                    "debit": {"min": "1", "max": "5"},
                    "withdrawal": {"min": "1", "max": "5"},
                }
            },
            {
                "xyz": {
                    "topup": {"min": "1", "max": "5"},
                    "debit": {"min": "1", "max": "5"},
                    "withdrawal": {"min": "1", "max": "5"},
                }
            },
        ],
        ids=["uppercase", "incomplete", "min-above-max", "fraction-of-a-yen", "unknown-code"],
    )
    def test_bad_tables_stop_the_start(self, table: dict[str, object]) -> None:
        with pytest.raises((ValidationError, ValueError)):
            configured(amount_limits=table)

    def test_openapi_shows_this_configurations_limits(self) -> None:
        spec = create_app(
            configured(
                amount_limits={
                    "nok": {
                        "topup": {"min": Decimal(100), "max": Decimal(100_000)},
                        "debit": {"min": Decimal(1), "max": Decimal(100_000)},
                        "withdrawal": {"min": Decimal(200), "max": Decimal(50_000)},
                    }
                }
            )
        ).openapi()
        topup = spec["paths"]["/api/v1/topups"]["post"]["description"]
        assert "| `jpy` | 50 | 1000000 |" in topup
        assert "| `nok` | 100 | 100000 |" in topup
        withdrawal = spec["paths"]["/api/v1/me/payouts"]["post"]["description"]
        assert "| `nok` | 200 | 50000 |" in withdrawal
        assert "currency_not_supported" in withdrawal
        checkout = spec["paths"]["/api/v1/checkout/sessions"]["post"]
        assert "| `kwd` | 3 | 3000 |" in checkout["description"]
        assert "currency_not_supported" in checkout["responses"]["422"]["x-problem-codes"]


class TestRefusals:
    async def test_top_up_in_a_currency_without_limits(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/topups",
            json={"amount": 5_000, "currency": "cad"},
            headers={**auth("lim_cust"), "Idempotency-Key": "lim-1"},
        )
        assert response.status_code == 422, response.text
        problem = response.json()
        assert (problem["code"], problem["currency"]) == ("currency_not_supported", "cad")
        assert {"usd", "eur", "gbp", "jpy", "kwd"} <= set(problem["supported_currencies"])

    @pytest.mark.parametrize(("amount", "minimum"), [(49, 50), (1_000_001, 50)])
    async def test_yen_top_up_outside_its_range(
        self, client: httpx.AsyncClient, amount: int, minimum: int
    ) -> None:
        response = await client.post(
            "/api/v1/topups",
            json={"amount": amount, "currency": "jpy"},
            headers={**auth("lim_cust"), "Idempotency-Key": f"lim-jpy-{amount}"},
        )
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "amount_out_of_range"
        assert (problem["minimum"], problem["maximum"]) == (minimum, 1_000_000)

    async def test_checkout_in_a_currency_without_limits(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "topup",
                "amount": 5_000,
                "currency": "cad",
                "success_url": "http://localhost:3000/ok",
                "cancel_url": "http://localhost:3000/no",
            },
            headers={**auth("lim_cust"), "Idempotency-Key": "lim-cs"},
        )
        assert (response.status_code, response.json()["code"]) == (422, "currency_not_supported")

    async def test_withdrawal_in_a_currency_without_limits(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/me/payouts",
            json={"amount": 5_000, "currency": "cad"},
            headers={**auth("lim_payee", PAYEE), "Idempotency-Key": "lim-w"},
        )
        assert (response.status_code, response.json()["code"]) == (422, "currency_not_supported")
