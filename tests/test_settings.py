from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from payments_api.settings import DEV_JWT_SECRET, Settings, stripe_api_base

GOOD_PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "database_url": "postgresql+asyncpg://app:pw@db/payments",
    "stripe_secret_key": "sk_live_abc",
    "stripe_webhook_secrets": "whsec_1,whsec_2",
    "stripe_connect_webhook_secrets": "whsec_3",
    "jwt_secret": "p" * 40,
    "public_base_url": "https://pay.example.com",
}


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


class TestSettings:
    def test_development_defaults_are_sandbox(self) -> None:
        settings = _settings()
        assert settings.sandbox
        assert settings.effective_jwt_secret() == DEV_JWT_SECRET

    def test_env_prefix_and_csv_lists(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMENTS_CORS_ORIGINS", "https://a.example, https://b.example")
        monkeypatch.setenv("PAYMENTS_STRIPE_WEBHOOK_SECRETS", "whsec_a,whsec_b")
        monkeypatch.setenv("PAYMENTS_FRONTEND_ORIGINS", "https://app.example, https://m.example")
        settings = _settings()
        assert settings.frontend_origins == ["https://app.example", "https://m.example"]
        assert settings.cors_origins == ["https://a.example", "https://b.example"]
        assert [s.get_secret_value() for s in settings.stripe_webhook_secrets] == [
            "whsec_a",
            "whsec_b",
        ]

    def test_secrets_are_not_printed(self) -> None:
        settings = _settings(**GOOD_PRODUCTION)
        assert "sk_live_abc" not in repr(settings)
        assert "pw@" not in repr(settings)

    def test_good_production(self) -> None:
        assert _settings(**GOOD_PRODUCTION).is_production

    @pytest.mark.parametrize(
        ("override", "message"),
        [
            ({"database_url": None}, "PAYMENTS_DATABASE_URL"),
            ({"stripe_secret_key": None}, "no sandbox"),
            ({"stripe_secret_key": "sk_test_abc"}, "not a live key"),
            ({"stripe_webhook_secrets": ""}, "WEBHOOK_SECRETS"),
            ({"jwt_secret": None}, "JWT_SECRET"),
            ({"jwt_secret": DEV_JWT_SECRET}, "JWT_SECRET"),
            ({"jwt_secret": "short"}, "JWT_SECRET"),
            ({"public_base_url": "http://pay.example.com"}, "https"),
            ({"jwt_algorithms": "RS256", "jwt_secret": None}, "PUBLIC_KEY"),
        ],
    )
    def test_production_refuses_unsafe_configuration(
        self, override: dict[str, Any], message: str
    ) -> None:
        values = {**GOOD_PRODUCTION, **override}
        with pytest.raises(ValidationError, match=message):
            _settings(**{k: v for k, v in values.items() if v is not None})

    def test_unknown_jwt_algorithm(self) -> None:
        with pytest.raises(ValidationError, match="unsupported JWT algorithms"):
            _settings(jwt_algorithms="none")


def test_a_live_key_outside_production_is_refused() -> None:
    with pytest.raises(ValidationError, match="live Stripe key requires PAYMENTS_ENVIRONMENT"):
        Settings(_env_file=None, stripe_secret_key=SecretStr("sk_live_abc"))


class TestTheServiceAddressesItself:
    """The sandbox gateway, onboarding links, the demo and the allowed redirect origins
    follow where the service listens; a fixed default (port 8000) sent a service on
    another port's Stripe calls to whatever answered on 8000."""

    @pytest.fixture(autouse=True)
    def _no_address_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("PAYMENTS_PUBLIC_BASE_URL", "PAYMENTS_HOST", "PAYMENTS_PORT"):
            monkeypatch.delenv(name, raising=False)

    def test_the_port_it_listens_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMENTS_PORT", "18801")
        settings = _settings()
        assert settings.public_base_url == "http://127.0.0.1:18801"
        assert stripe_api_base(settings) == "http://127.0.0.1:18801/sandbox/stripe"
        assert "http://127.0.0.1:18801" in settings.redirect_origins()

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("0.0.0.0", "http://127.0.0.1:9000"),  # noqa: S104 - what a container binds
            ("::", "http://127.0.0.1:9000"),
            ("::1", "http://[::1]:9000"),
            ("localhost", "http://localhost:9000"),
        ],
    )
    def test_a_bind_address_becomes_a_reachable_one(self, host: str, expected: str) -> None:
        assert _settings(host=host, port=9000).public_base_url == expected

    def test_an_explicit_public_url_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Behind a proxy: the sandbox and the redirects use the address clients use.
        monkeypatch.setenv("PAYMENTS_PUBLIC_BASE_URL", "https://pay.example.test/api")
        settings = _settings(port=18801)
        assert settings.public_base_url == "https://pay.example.test/api"
        assert stripe_api_base(settings) == "https://pay.example.test/api/sandbox/stripe"
        assert "https://pay.example.test/api" in settings.redirect_origins()
        assert not any("18801" in origin for origin in settings.redirect_origins())

    def test_a_configured_stripe_base_is_kept_in_sandbox_mode(self) -> None:
        # compose.yaml's worker reaches the sandbox in the api container this way.
        settings = _settings(stripe_api_base="http://api:8000/sandbox/stripe")
        assert settings.sandbox
        assert stripe_api_base(settings) == "http://api:8000/sandbox/stripe"
