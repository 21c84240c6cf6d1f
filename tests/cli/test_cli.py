from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payments_api.auth import TokenVerifier
from payments_api.cli import app
from payments_api.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "tests")  # no .env from the working tree
    for name in ("PAYMENTS_ENVIRONMENT", "PAYMENTS_JWT_SECRET", "PAYMENTS_JWT_ALGORITHMS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


class TestTokenCommand:
    def test_mints_a_token_the_service_accepts(self) -> None:
        result = runner.invoke(app, ["token", "--sub", "u1", "--role", "customer"])
        assert result.exit_code == 0, result.output
        principal = TokenVerifier(Settings(_env_file=None)).verify(result.stdout.strip())
        assert principal.sub == "u1"
        assert principal.roles == frozenset({"customer"})

    def test_unknown_role(self) -> None:
        result = runner.invoke(app, ["token", "--sub", "u1", "--role", "root"])
        assert result.exit_code == 2

    def test_refused_in_production(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in {
            "PAYMENTS_ENVIRONMENT": "production",
            "PAYMENTS_DATABASE_URL": "postgresql://x@db/p",
            "PAYMENTS_STRIPE_SECRET_KEY": "sk_live_x",
            "PAYMENTS_STRIPE_WEBHOOK_SECRETS": "whsec_1",
            "PAYMENTS_STRIPE_CONNECT_WEBHOOK_SECRETS": "whsec_2",
            "PAYMENTS_JWT_SECRET": "s" * 40,
            "PAYMENTS_PUBLIC_BASE_URL": "https://pay.example.com",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        result = runner.invoke(app, ["token", "--sub", "u1"])
        assert result.exit_code == 2
        assert "production" in result.output
        assert result.stdout.count(".") < 2  # no JWT printed


class TestOpenApi:
    def test_committed_spec_matches_code(self) -> None:
        """If this fails: `payments-api openapi > openapi.json` and commit the result."""
        result = runner.invoke(app, ["openapi"])
        assert result.exit_code == 0, result.output
        committed = (REPO / "openapi.json").read_text()
        assert json.loads(result.stdout) == json.loads(committed), (
            "openapi.json is stale: run `payments-api openapi > openapi.json`"
        )

    def test_operation_ids_are_camel_case_and_unique(self) -> None:
        spec = json.loads((REPO / "openapi.json").read_text())
        ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
        assert len(ids) == len(set(ids))
        assert all(i[0].islower() and "_" not in i for i in ids)
        for item in spec["paths"].values():
            for op in item.values():
                assert op["tags"], op["operationId"]
                assert op.get("summary"), op["operationId"]
