"""The ``payments-api`` command line (typer: typed options, help and completion for free)."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Annotated

import typer

from payments_api.settings import Settings, get_settings

app = typer.Typer(help="payments-api: marketplace payments on Stripe.", no_args_is_help=True)


def _prepare_database(settings: Settings) -> str:
    import asyncio

    from payments_api.db import resolve_database_url
    from payments_api.jobs.queue import asyncpg_dsn, install_queue_schema
    from payments_api.migrations import upgrade_to_head

    url = resolve_database_url(settings)
    upgrade_to_head(url)
    asyncio.run(install_queue_schema(asyncpg_dsn(url)))
    return url


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port.")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
    migrate: Annotated[
        bool, typer.Option(help="Run migrations first (always on with the embedded database).")
    ] = False,
) -> None:
    """Run the HTTP service with uvicorn."""
    import uvicorn

    # The command line wins over the environment, and the settings every worker builds
    # (the sandbox's own Stripe address among them) must see the same host and port.
    if host is not None:
        os.environ["PAYMENTS_HOST"] = host
    if port is not None:
        os.environ["PAYMENTS_PORT"] = str(port)
    get_settings.cache_clear()
    settings = get_settings()
    if settings.database_url is None or migrate:
        # The embedded server is started here, once, and its URL handed to the
        # workers, so N workers share one private PostgreSQL.
        os.environ["PAYMENTS_DATABASE_URL"] = _prepare_database(settings)
        get_settings.cache_clear()
    if settings.sandbox:
        typer.secho(
            "SANDBOX MODE: no Stripe key configured, no real money moves.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the
    # original handler in place; with the default handler the process dies without
    # running its exit hooks, and the embedded PostgreSQL started above kept running.
    # Exiting normally lets pgserver stop it (unless another process still uses it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "payments_api.main:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers or settings.workers,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        server_header=False,
        log_config=None,
    )


@app.command()
def worker() -> None:
    """Run the background worker (webhook retries, sweeps, retention)."""
    import asyncio

    from payments_api.jobs.worker import build_worker
    from payments_api.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    # Killed by the default SIGTERM handler, the process skipped its exit hooks, and an
    # embedded PostgreSQL it was the last user of kept running. Until the queue runs
    # (migrations, start-up), SIGTERM exits at once but through those hooks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if settings.database_url is None:
        os.environ["PAYMENTS_DATABASE_URL"] = _prepare_database(settings)
        get_settings.cache_clear()
        settings = get_settings()

    async def run() -> None:
        pgq, close = await build_worker(settings)
        # SIGTERM/Ctrl-C: pgqueuer finishes its jobs in flight and stops; then the
        # connections close and the process exits normally.
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, pgq.shutdown.set)
        try:
            await pgq.run()
        finally:
            await close()

    asyncio.run(run())


@app.command()
def reconcile(
    date: Annotated[
        str | None, typer.Option(help="UTC day to reconcile, YYYY-MM-DD (default: yesterday).")
    ] = None,
) -> None:
    """Reconcile a day's ledger against Stripe; rerunning a day replaces its result.

    Prints the run as JSON. Exit code 0: all matched; 1: mismatches; 2: the run failed.
    """
    import asyncio
    from datetime import date as date_type

    from payments_api.problems import ProblemError
    from payments_api.reconciliation.cli import EXIT_FAILED, EXIT_MISMATCHES, reconcile

    try:
        day = date_type.fromisoformat(date) if date else None
    except ValueError:
        typer.secho("--date must be YYYY-MM-DD", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_FAILED) from None
    try:
        run = asyncio.run(reconcile(get_settings(), day))
    except ProblemError as exc:
        typer.secho(f"reconciliation failed: {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(run.model_dump_json(indent=2))
    if run.mismatch_count:
        raise typer.Exit(EXIT_MISMATCHES)


plans_app = typer.Typer(help="Subscription plans (Stripe Products and recurring Prices).")
app.add_typer(plans_app, name="plans")


@plans_app.command("sync")
def plans_sync() -> None:
    """Pull every product and recurring price from Stripe (all pages); prints counts."""
    import asyncio

    from payments_api.db import create_engine, create_sessionmaker, resolve_database_url
    from payments_api.stripe.gateway import StripeGateway
    from payments_api.subscriptions.plans import PlanSync

    settings = get_settings()

    async def run() -> str:
        engine = create_engine(resolve_database_url(settings), settings)
        gateway = StripeGateway(settings)
        try:
            result = await PlanSync(create_sessionmaker(engine), gateway).run()
        finally:
            await gateway.aclose()
            await engine.dispose()
        return result.model_dump_json()

    typer.echo(asyncio.run(run()))


invoices_app = typer.Typer(help="Subscription invoices.")
app.add_typer(invoices_app, name="invoices")


@invoices_app.command("backfill-payments")
def invoices_backfill_payments(
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Invoices per page.")] = 100,
    max_pages: Annotated[int, typer.Option(min=1, help="Pages at most in this run.")] = 10,
) -> None:
    """Store the PaymentIntent and charge of paid invoices booked without them (read from
    Stripe), so reconciliation, refunds and disputes find them; prints counts. Safe to run
    again: run until has_more is false."""
    import asyncio

    from payments_api.db import create_engine, create_sessionmaker, resolve_database_url
    from payments_api.stripe.gateway import StripeGateway
    from payments_api.subscriptions.backfill import InvoicePaymentBackfill

    settings = get_settings()

    async def run() -> str:
        engine = create_engine(resolve_database_url(settings), settings)
        gateway = StripeGateway(settings)
        try:
            result = await InvoicePaymentBackfill(
                create_sessionmaker(engine),
                gateway,
                settings,
                page_size=page_size,
                max_pages=max_pages,
            ).run()
        finally:
            await gateway.aclose()
            await engine.dispose()
        return result.model_dump_json()

    typer.echo(asyncio.run(run()))


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head) and the job queue's schema."""
    _prepare_database(get_settings())
    typer.echo("migrations at head")


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="User id (the `sub` claim).")],
    role: Annotated[
        list[str] | None, typer.Option(help="customer, payee or admin; repeatable.")
    ] = None,
    email: Annotated[str | None, typer.Option(help="Email claim.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a local development JWT (refused in production)."""
    from payments_api.auth import KNOWN_ROLES, mint_dev_token

    settings = get_settings()
    if settings.is_production:
        typer.secho("refusing to mint tokens in production", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    roles = role or ["customer"]
    unknown = set(roles) - KNOWN_ROLES
    if unknown:
        typer.secho(f"unknown roles: {sorted(unknown)}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    typer.echo(mint_dev_token(settings, sub=sub, roles=roles, email=email, ttl_seconds=ttl))


@app.command()
def demo(
    base_url: Annotated[
        str | None, typer.Option(help="The running sandbox service (default: settings).")
    ] = None,
) -> None:
    """Click through every flow against a running sandbox service and check balances."""
    from payments_sandbox.demo import main

    raise typer.Exit(main(base_url))


@app.command()
def openapi() -> None:
    """Print the OpenAPI document (the committed openapi.json is this output)."""
    from payments_api.main import create_app

    spec = create_app(Settings(_env_file=None)).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    app()
