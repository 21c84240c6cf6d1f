"""Service configuration, read once from the environment (prefix ``PAYMENTS_``).

Every variable is documented in ``.env.example``; the README's configuration table is
generated from the same field descriptions.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from payments_api.money import (
    DEFAULT_AMOUNT_LIMITS,
    AmountLimits,
    CurrencyLimits,
    LimitedOperation,
    check_limits_table,
    operation_limits,
)
from payments_api.sandbox_secret import sandbox_webhook_secret

# A fixed, loudly insecure secret so that `payments-api token` and a local `serve`
# agree out of the box. Production refuses to start with it.
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789"  # noqa: S105

SUPPORTED_JWT_ALGORITHMS = frozenset({"HS256", "HS384", "HS512", "RS256", "ES256"})


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


def _split_csv(value: Any) -> Any:
    """Accept ``a,b`` as well as a JSON list for list-valued variables."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]
SecretCsvList = Annotated[list[SecretStr], NoDecode]


class ServiceSettings(BaseSettings):
    """How the service runs: environment, database, HTTP, identity and Stripe. The rules
    of the money flows are ``Settings``, which adds its fields after these."""

    model_config = SettingsConfigDict(
        env_prefix="PAYMENTS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Environment = Field(
        Environment.development, description="development, test or production."
    )
    # --- database -----------------------------------------------------------------
    database_url: SecretStr | None = Field(
        None,
        description="postgresql+asyncpg://user:pass@host/db. Unset: an embedded PostgreSQL "
        "(pgserver) is started in PAYMENTS_DATA_DIR.",
    )
    data_dir: Path = Field(
        Path(".data/postgres"), description="Data folder of the embedded PostgreSQL."
    )
    # 16 kept: measured in bench/ (32 concurrent settlements on 2 workers), a pool smaller
    # than a worker's concurrent requests opened and closed overflow connections all the
    # time, and each costs a PostgreSQL backend start. 2 workers x (16 + 10) stay well
    # under PostgreSQL's default max_connections of 100.
    db_pool_size: int = Field(16, ge=1, le=200, description="Connections kept per process.")
    db_max_overflow: int = Field(10, ge=0, le=200, description="Extra connections under burst.")
    db_pool_pre_ping: bool = Field(
        False,
        description="Test each pooled connection before use (3 extra round trips per "
        "transaction; dropped connections are otherwise detected and replaced on error).",
    )
    db_pool_recycle_seconds: int = Field(
        1800, ge=60, description="Replace pooled connections older than this."
    )
    db_statement_timeout_ms: int = Field(
        15_000, ge=0, description="Server-side statement timeout per connection (0 = none)."
    )
    # --- HTTP -----------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `payments-api serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `payments-api serve` binds.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes.")
    public_base_url: str = Field(
        "",
        description=(
            "URL where this service is reached by browsers (and, in sandbox mode, by its own "
            "Stripe gateway). Empty: http://<host>:<port> of this service itself."
        ),
    )
    cors_origins: CsvList = Field(
        default_factory=list,
        description="Frontend origins allowed by CORS (comma separated). None by default.",
    )
    trusted_proxies: CsvList = Field(
        default_factory=list,
        description="Proxy IPs whose X-Forwarded-* headers are trusted. None by default.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted, in bytes."
    )
    rate_limit_enabled: bool = Field(
        True, description="Limit write requests per user and per client IP."
    )
    rate_limit_per_user: str = Field(
        "120/minute", description="Write requests allowed per user (limits syntax)."
    )
    rate_limit_per_ip: str = Field(
        "600/minute", description="Write requests allowed per client IP (limits syntax)."
    )
    rate_limit_storage_uri: str = Field(
        "memory://",
        description="Where rate-limit counters live: memory:// (the default: counted per "
        "process, so N replicas or workers allow N times the limit) or a shared Redis, "
        "async+redis://host:6379 (checked at start: an unreachable store stops the service).",
    )
    rate_limit_key_prefix: str = Field(
        "payments-api",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of the counters' keys in a shared store: two installations "
        "sharing one Redis (staging and production) need different prefixes, or one "
        "user's requests count against both.",
    )
    problem_base_url: str = Field(
        "https://payments-api.dev/problems",
        description="Prefix of the `type` URI of problem responses.",
    )
    log_level: str = Field("INFO", description="Log level.")
    log_json: bool = Field(True, description="JSON logs (true) or human-readable console logs.")
    # --- identity -------------------------------------------------------------------
    jwt_algorithms: CsvList = Field(
        default_factory=lambda: ["HS256"],
        description="Accepted JWT algorithms, pinned (never read from the token).",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="Shared secret for HS* tokens (>= 32 bytes in production)."
    )
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key for RS256/ES256 tokens."
    )
    jwt_jwks_file: Path | None = Field(None, description="JWKS file for RS256/ES256 tokens.")
    jwt_issuer: str | None = Field(None, description="Required `iss` when set.")
    jwt_audience: str | None = Field(None, description="Required `aud` when set.")
    jwt_leeway_seconds: int = Field(
        30, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat."
    )
    # --- Stripe ---------------------------------------------------------------------
    stripe_secret_key: SecretStr | None = Field(
        None, description="Stripe secret key. Unset: sandbox mode (no network)."
    )
    stripe_webhook_secrets: SecretCsvList = Field(
        default_factory=list,
        description="Signing secrets of the platform webhook endpoint (comma separated, "
        "several during rotation).",
    )
    stripe_connect_webhook_secrets: SecretCsvList = Field(
        default_factory=list,
        description="Signing secrets of the Connect webhook endpoint (comma separated).",
    )
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="Stripe API base URL (a mock or proxy in tests)."
    )
    stripe_max_network_retries: int = Field(
        2, ge=0, le=10, description="Retries of idempotent-safe Stripe calls on network errors."
    )
    stripe_timeout_seconds: float = Field(
        20.0, gt=0, le=120, description="Timeout of one Stripe HTTP request."
    )

    _split = field_validator(
        "cors_origins",
        "trusted_proxies",
        "jwt_algorithms",
        "stripe_webhook_secrets",
        "stripe_connect_webhook_secrets",
        mode="before",
    )(_split_csv)

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        unknown = set(value) - SUPPORTED_JWT_ALGORITHMS
        if unknown or not value:
            raise ValueError(
                f"unsupported JWT algorithms {sorted(unknown)}; "
                f"choose from {sorted(SUPPORTED_JWT_ALGORITHMS)}"
            )
        return value

    @model_validator(mode="after")
    def _address_this_service(self) -> ServiceSettings:
        # The sandbox gateway, onboarding return links and the demo all address the
        # service where it really listens: a fixed default (port 8000) made a service on
        # another port call -- and write into -- whatever answered on 8000.
        if not self.public_base_url:
            host = self.host
            if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - bind-all maps to loopback
                host = "127.0.0.1"
            elif ":" in host:
                host = f"[{host}]"
            self.public_base_url = f"http://{host}:{self.port}"
        return self

    @property
    def sandbox(self) -> bool:
        """No Stripe key: every Stripe call is answered by the in-process sandbox."""
        return self.stripe_secret_key is None

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.production

    def effective_jwt_secret(self) -> str | None:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if not self.is_production and any(a.startswith("HS") for a in self.jwt_algorithms):
            return DEV_JWT_SECRET
        return None


class Settings(ServiceSettings):
    """The service's configuration: ``ServiceSettings`` and the rules of the money flows."""

    # --- pay-ins (checkout, top-ups, orders) --------------------------------------
    frontend_origins: CsvList = Field(
        default_factory=lambda: ["http://localhost:3000"],
        description=(
            "Origins allowed in Checkout success/cancel URLs (comma separated); the "
            "service's own origin (public_base_url) is always allowed too."
        ),
    )
    amount_limits: dict[str, CurrencyLimits] = Field(
        default_factory=dict,
        description="Per-currency limits, JSON, added to or replacing the built-in ones "
        "(usd/eur/gbp 10-10,000, jpy 50-1,000,000, kwd 3-3,000 for top-ups; see README): "
        '{"nok": {"topup": {"min": "100", "max": "100000"}, "debit": {"min": "0.01", '
        '"max": "100000"}, "withdrawal": {"min": "100", "max": "100000"}}}, in the '
        "currency's major unit. A currency with no limits takes no top-ups, direct "
        "payments, wallet debits or withdrawals (422 currency_not_supported).",
    )
    checkout_session_ttl_minutes: int = Field(
        60, ge=30, le=1440, description="Lifetime of a Checkout Session (Stripe: 30 min-24 h)."
    )
    finish_payment_url: str = Field(
        "",
        max_length=2048,
        description=(
            "Page of the frontend where a customer finishes a payment that needs them "
            "(3-D Secure of an off-session top-up); `{order_id}` and `{payment_intent_id}` "
            "are filled in. Empty: the sandbox's payment page in sandbox mode, else none."
        ),
    )
    # --- subscriptions ----------------------------------------------------------------
    subscriptions_one_per_family: bool = Field(
        True,
        description="Refuse a second live subscription in the same plan family (product "
        "`metadata.family`, else the product) for one customer.",
    )
    subscriptions_past_due_grace_hours: int = Field(
        72,
        ge=0,
        le=24 * 60,
        description="How long a past_due subscription stays entitled after its first "
        "failed renewal, in hours.",
    )
    # --- idempotency ----------------------------------------------------------------
    idempotency_lease_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="Lease of a request holding an Idempotency-Key, renewed while it runs; "
        "when a crashed request's lease runs out, a retry takes the key over.",
    )
    idempotency_retention_hours: int = Field(
        24,
        ge=24,
        le=24 * 90,
        description="How long a stored Idempotency-Key response is replayed (>= 24 h); "
        "expired keys are pruned by a scheduled job.",
    )
    # --- escrow and earnings --------------------------------------------------------
    escrow_platform_fee_bps: int = Field(
        500,
        ge=0,
        le=10_000,
        description="Platform fee the customer pays on top of a job price, in basis points "
        "of the price (500 = 5%), rounded half-even. Captured on each escrow at creation.",
    )
    escrow_service_fee_bps: int = Field(
        2_000,
        ge=0,
        le=10_000,
        description="Service fee withheld from the job price when the job is completed, in "
        "basis points (2000 = 20%), rounded half-even. Captured on each escrow at creation.",
    )
    escrow_min_major: int = Field(
        1,
        ge=0,
        description="Smallest job price, in the currency's major unit (1 = 1.00 usd, 1 jpy); "
        "raised per currency where needed so that each non-zero fee takes at least one minor "
        "unit.",
    )
    escrow_keep_platform_fee_on_cancel: bool = Field(
        True,
        description="Cancelling an accepted escrow keeps the platform fee (true) or refunds "
        "it to the customer (false). Captured on each escrow at creation.",
    )
    escrow_customer_may_cancel_after_accept: bool = Field(
        True,
        description="Customers may cancel an escrow their payee already accepted (admins "
        "always may).",
    )
    earnings_default_timezone: str = Field(
        "UTC",
        description="IANA time zone of the earnings summary windows (today, last 7 and 30 "
        "days) when a request sends no `tz`.",
    )

    @field_validator("amount_limits")
    @classmethod
    def _valid_limits(cls, value: dict[str, CurrencyLimits]) -> dict[str, CurrencyLimits]:
        return check_limits_table(value)

    def limits_table(self) -> dict[str, CurrencyLimits]:
        """The built-in limits with ``amount_limits`` applied on top."""
        return {**DEFAULT_AMOUNT_LIMITS, **self.amount_limits}

    def limits(self, currency: str, operation: LimitedOperation) -> AmountLimits | None:
        """Minor-unit limits of an operation in a currency; None: not supported."""
        return operation_limits(self.limits_table(), currency, operation)

    @field_validator("earnings_default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import available_timezones

        if value not in available_timezones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    # --- connect (payout accounts) and payouts ---------------------------------------
    direct_application_fee_bps: int = Field(
        1_000,
        ge=0,
        lt=10_000,
        description="Platform's application fee on direct payments to a payee (tips, "
        "pay-per-request), in basis points of the amount (1000 = 10%), rounded half-even. "
        "Captured on each payment when it is created.",
    )
    connect_account_country: str | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Country (ISO 3166-1 alpha-2, e.g. US) of new Express accounts. Unset: "
        "Stripe uses the platform's country.",
    )
    connect_capabilities: CsvList = Field(
        default_factory=lambda: ["card_payments", "transfers"],
        description="Capabilities requested for new Express accounts (comma separated).",
    )
    connect_return_url: str | None = Field(
        None,
        description="Where the onboarding return page sends the browser (e.g. the app deep "
        "link myapp://payouts/return). Unset: a small HTML page is shown.",
    )
    connect_sync_stale_after_seconds: int = Field(
        300,
        ge=0,
        description="GET /me/payout-account asks Stripe again when the stored state is older "
        "than this (0 = always).",
    )
    connect_link_state_ttl_seconds: int = Field(
        3600,
        ge=60,
        le=7 * 86400,
        description="Lifetime of the signed state in onboarding refresh/return URLs.",
    )
    connect_link_state_secret: SecretStr | None = Field(
        None,
        description="HMAC key signing onboarding refresh/return URLs (>= 32 bytes). Unset: "
        "derived from the Stripe secret key.",
    )

    _split_lists = field_validator("frontend_origins", "connect_capabilities", mode="before")(
        _split_csv
    )
    # --- refunds, disputes and reconciliation ----------------------------------------
    refund_recovery_after_seconds: int = Field(
        300,
        ge=30,
        description="A refund we asked for (admin refund, wallet cash-out part) still "
        "waiting for Stripe's answer after this long is retried by the worker with the same "
        "idempotency key.",
    )
    wallet_refund_window_days: int = Field(
        180,
        ge=1,
        le=3650,
        description="Wallet cash-outs go back only to top-up charges paid within this many "
        "days (Stripe's refund window for cards; older charges are skipped, newest first).",
    )
    payout_default_delay_days: int = Field(
        2,
        ge=0,
        le=365,
        description="Days from a withdrawal to the payee's bank when the connected account's "
        "payout schedule (Stripe's settings.payouts.schedule.delay_days) is not known yet.",
    )
    reconciliation_cron: str = Field(
        "30 2 * * *",
        description="When the worker reconciles the previous UTC day against Stripe (cron, UTC).",
    )
    reconciliation_grace_minutes: int = Field(
        360,
        ge=0,
        le=7 * 24 * 60,
        description="Slack around the reconciled day: an object recorded this long before or "
        "after midnight on the other side still matches.",
    )
    reconciliation_max_balance_transactions: int = Field(
        100_000,
        ge=100,
        description="A reconciliation run fails (rather than paging for ever) when Stripe "
        "reports more balance transactions than this for its window.",
    )
    # --- sandbox ----------------------------------------------------------------------------
    # --- webhooks and jobs --------------------------------------------------------------
    webhook_retention_days: int = Field(
        30, ge=1, description="Applied webhook events older than this are pruned."
    )
    webhook_max_attempts: int = Field(
        12, ge=1, description="Attempts before a failing event waits for an admin replay."
    )
    webhook_tolerance_seconds: int = Field(
        300, ge=1, le=3600, description="Max age of a webhook signature timestamp."
    )

    # --- outgoing events and receipts ---------------------------------------------------
    events_delivery_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Timeout of one outgoing event delivery request."
    )
    events_allow_private_addresses: bool = Field(
        False,
        description="Outside production only: let endpoints on loopback and private "
        "addresses receive events (local development; always so in sandbox mode). "
        "Ignored in production.",
    )
    events_retention_days: int = Field(
        90,
        ge=7,
        description="Outgoing events older than this are pruned with their deliveries "
        "(never one still waiting to be delivered).",
    )
    events_disable_after_hours: int = Field(
        120,
        ge=1,
        description="An endpoint whose deliveries all failed for this long is disabled.",
    )
    smtp_url: SecretStr | None = Field(
        None,
        description="smtp://[user:password@]host:port (smtps:// for implicit TLS; "
        "?starttls=true for STARTTLS): email receipts are sent when set, off otherwise.",
    )
    receipts_from: str = Field(
        "receipts@payments-api.invalid", description="The From address of email receipts."
    )
    merchant_name: str = Field(
        "payments-api", description="The business name receipts are issued under."
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment is not Environment.production:
            # The image no longer bakes production in (so `migrate` and the sandbox run
            # from it); a live key outside production would get development defaults
            # such as the published dev JWT secret, so it is refused outright.
            key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
            if key.startswith(("sk_live_", "rk_live_")):
                raise ValueError(
                    "a live Stripe key requires PAYMENTS_ENVIRONMENT=production "
                    f"(the environment is {self.environment.value})"
                )
            return self
        problems = production_problems(self)
        if problems:
            raise ValueError("unsafe production configuration: " + "; ".join(problems))
        return self

    def redirect_origins(self) -> list[str]:
        """Origins a Checkout success/cancel URL may start with: the configured frontends
        and the service's own origin (its sandbox pages, the demo)."""
        return [*self.frontend_origins, self.public_base_url]

    @property
    def events_may_target_private_addresses(self) -> bool:
        # Sandbox mode is local by definition (no Stripe key): its demo receives events
        # on loopback.
        allowed = self.events_allow_private_addresses or self.sandbox
        return allowed and not self.is_production


def webhook_secrets(settings: Settings, endpoint: str) -> list[str]:
    """Signing secrets of a webhook endpoint; in sandbox mode the sandbox's own secret
    is accepted too, since the sandbox signs the events it emits with it."""
    configured = (
        settings.stripe_webhook_secrets
        if endpoint == "platform"
        else settings.stripe_connect_webhook_secrets
    )
    secrets = [s.get_secret_value() for s in configured]
    if settings.sandbox and not settings.is_production:
        secrets.append(sandbox_webhook_secret(settings))
    return secrets


def stripe_api_base(settings: Settings) -> str:
    """Where the gateway sends Stripe calls: Stripe (or a configured mock/proxy), or in
    sandbox mode the service's own Stripe-compatible sandbox API."""
    if settings.sandbox and settings.stripe_api_base == "https://api.stripe.com":
        return settings.public_base_url.rstrip("/") + "/sandbox/stripe"
    return settings.stripe_api_base


def production_problems(settings: Settings) -> list[str]:
    """Everything that makes a configuration unfit to hold real money."""
    problems: list[str] = []
    if settings.database_url is None:
        problems.append("PAYMENTS_DATABASE_URL is required (no embedded database)")
    key = settings.stripe_secret_key.get_secret_value() if settings.stripe_secret_key else ""
    if not key:
        problems.append("PAYMENTS_STRIPE_SECRET_KEY is required (no sandbox)")
    elif not key.startswith(("sk_live_", "rk_live_")):
        problems.append("PAYMENTS_STRIPE_SECRET_KEY is not a live key")
    if not settings.stripe_webhook_secrets:
        problems.append("PAYMENTS_STRIPE_WEBHOOK_SECRETS is required")
    if not settings.stripe_connect_webhook_secrets:
        problems.append("PAYMENTS_STRIPE_CONNECT_WEBHOOK_SECRETS is required")
    uses_hs = any(a.startswith("HS") for a in settings.jwt_algorithms)
    uses_pk = any(not a.startswith("HS") for a in settings.jwt_algorithms)
    if uses_hs:
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
        if len(secret) < 32 or secret == DEV_JWT_SECRET:
            problems.append("PAYMENTS_JWT_SECRET must be a private secret of >= 32 bytes")
    if uses_pk and settings.jwt_public_key_file is None and settings.jwt_jwks_file is None:
        problems.append("PAYMENTS_JWT_PUBLIC_KEY_FILE or PAYMENTS_JWT_JWKS_FILE is required")
    if not settings.public_base_url.startswith("https://"):
        problems.append("PAYMENTS_PUBLIC_BASE_URL must be https")
    return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
