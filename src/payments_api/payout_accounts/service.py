"""ConnectService: a payee's Stripe Connect Express account (SPEC 6.3).

Stripe is the source of truth. We store the last state it told us (webhook or API
read), derive the status from it (payout_accounts.status), and never mark anything
complete because a browser came back. See docs/payout-accounts.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit import repository as audit_repository
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.clock import stripe_time, utcnow
from payments_api.kit.stripe_operation import call_with_key
from payments_api.payout_accounts.errors import (
    InvalidLinkState,
    PayoutAccountBusy,
    PayoutAccountNotFound,
    PayoutSetupIncomplete,
)
from payments_api.payout_accounts.links import LinkState, landing_urls, verify_state
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.payout_accounts.repository import PayoutAccountRepository
from payments_api.payout_accounts.schemas import (
    DashboardLinkRead,
    OnboardingLinkRead,
    PayoutAccountRead,
)
from payments_api.payout_accounts.status import PayoutAccountStatus, account_state
from payments_api.settings import Settings
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Account, AccountLink
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

PAYEE_ROLE = "payee"
# How long a concurrent first call waits for the twin that is creating the account.
# Below the default statement timeout, so the waiter gets a clean 409 + Retry-After.
_CREATION_LOCK_TIMEOUT = text("SET LOCAL lock_timeout = '10s'")
_DEFAULT_LOCK_TIMEOUT = text("SET LOCAL lock_timeout TO DEFAULT")
_LOCK_SQLSTATES = frozenset({"55P03", "57014"})  # lock_not_available, query_canceled


def to_read(row: PayoutAccount | None) -> PayoutAccountRead:
    if row is None or row.stripe_account_id is None:
        return PayoutAccountRead.not_started()
    status = PayoutAccountStatus(row.status)
    return PayoutAccountRead(
        status=status,
        setup_complete=status is PayoutAccountStatus.enabled,
        status_reason=row.status_reason,
        stripe_account_id=row.stripe_account_id,
        charges_enabled=row.charges_enabled,
        payouts_enabled=row.payouts_enabled,
        requirements_currently_due=list(row.requirements_currently_due),
        requirements_past_due=list(row.requirements_past_due),
    )


class ConnectService:
    def __init__(self, session: AsyncSession, stripe: StripeGateway, settings: Settings) -> None:
        self.session = session
        self.stripe = stripe
        self.settings = settings
        self.repository = PayoutAccountRepository(session)

    # --- reads ---------------------------------------------------------------------

    async def snapshot(self, user_id: str) -> PayoutAccountRead:
        """The stored state, no Stripe call (for other domains' responses)."""
        return to_read(await self.repository.get_by_user(user_id))

    async def get(self, user_id: str) -> PayoutAccountRead:
        """The stored state, refreshed from Stripe first when older than the configured
        age. If Stripe cannot be reached the stored state is returned as is."""
        row = await self.repository.get_by_user(user_id)
        if row is None or row.stripe_account_id is None:
            return PayoutAccountRead.not_started()
        if self._is_stale(row):
            try:
                row = await self._sync(row)
            except (PaymentProviderUnavailable, PaymentProviderError):
                log.warning("payout account %s: sync failed, serving stored state", row.id)
        return to_read(row)

    # --- links ---------------------------------------------------------------------

    async def onboarding_link(self, user: User) -> OnboardingLinkRead:
        """Create the user's Express account on first call, then a fresh onboarding link."""
        row = await self._ensure_account(user.id)
        link = await self._new_onboarding_link(row)
        return OnboardingLinkRead(
            url=link.url,
            expires_at=stripe_time(link.expires_at),
            payout_account=to_read(row),
        )

    async def dashboard_link(self, user: User) -> DashboardLinkRead:
        """A one-time Express dashboard login link; 422 until the payee has submitted
        their details (Stripe refuses login links before that)."""
        row = await self.repository.get_by_user(user.id)
        if row is None or row.stripe_account_id is None:
            raise PayoutSetupIncomplete(
                "Payout setup has not started: open the onboarding link first."
            )
        if not row.details_submitted:
            # The stored state may predate the payee finishing onboarding.
            row = await self._sync(row)
        if not row.details_submitted or row.stripe_account_id is None:
            raise PayoutSetupIncomplete(
                "Payout setup is not finished: complete the onboarding link first."
            )
        link = await self.stripe.create_login_link(row.stripe_account_id)
        return DashboardLinkRead(url=link.url, payout_account=to_read(row))

    async def refresh_onboarding_url(self, state_token: str | None) -> str:
        """The landing of an expired/used onboarding link: a new link for the same
        user and account, identified by the signed state (no bearer token here)."""
        state = verify_state(self.settings, state_token)
        row = await self.repository.get_by_user(state.user_id)
        if row is None or row.stripe_account_id != state.stripe_account_id:
            raise InvalidLinkState("The link no longer matches a payout account.")
        user = await UserRepository(self.session).get(state.user_id)
        if user is None or PAYEE_ROLE not in user.roles:
            raise InvalidLinkState("The link's user may no longer set up payouts.")
        link = await self._new_onboarding_link(row)
        return link.url

    async def record_return(self, state_token: str | None) -> bool:
        """The payee's browser came back from onboarding. This is not a completion
        signal: it only makes the next GET ask Stripe. False if the state is invalid."""
        try:
            state = verify_state(self.settings, state_token)
        except InvalidLinkState:
            return False
        await self.repository.mark_stale(state.user_id, state.stripe_account_id)
        return True

    # --- syncing -------------------------------------------------------------------

    async def force_sync(
        self, user_id: str, *, actor: User, request_id: str | None
    ) -> PayoutAccountRead:
        """Admin: read the account from Stripe now and store it (Stripe can change
        capabilities without an event). Audited."""
        row = await self.repository.get_by_user(user_id)
        if row is None or row.stripe_account_id is None:
            raise PayoutAccountNotFound(f"User {user_id!r} has no payout account.")
        before = to_read(row).model_dump(mode="json")
        row = await self._sync(row)
        after = to_read(row)
        await audit_repository.AuditLogRepository(self.session).record(
            actor_id=actor.id,
            action="payout_account.sync",
            target_type="payout_account",
            target_id=row.stripe_account_id or user_id,
            before=before,
            after=after.model_dump(mode="json"),
            reason=None,
            request_id=request_id,
        )
        return after

    async def apply_account_event(self, *, event_id: str, created: int, account: Account) -> bool:
        """Store the state carried by an ``account.updated`` event unless newer state is
        stored. Returns whether it was applied (an older event is acknowledged, unused)."""
        state = account_state(account)
        as_of = datetime.fromtimestamp(created, UTC)
        row = await self.repository.get_by_stripe_account(state.stripe_account_id)
        if row is None:
            return await self._adopt(event_id, account, as_of)
        applied = await self.repository.apply_state(
            row.id, state, as_of=as_of, event_id=event_id, synced_at=utcnow()
        )
        if not applied:
            log.info(
                "account.updated %s for %s is older than the stored state; ignored",
                event_id,
                state.stripe_account_id,
            )
            return False
        current = await self._reload(row.user_id)
        await emit(
            self.session,
            EventType.payout_account_updated,
            to_read(current),
            change_key=f"payout_account:{row.id}:{event_id}",
            user_ids=[row.user_id],
        )
        return True

    # --- internals -----------------------------------------------------------------

    def _is_stale(self, row: PayoutAccount) -> bool:
        if row.synced_at is None:
            return True
        age = utcnow() - row.synced_at
        return age >= timedelta(seconds=self.settings.connect_sync_stale_after_seconds)

    async def _sync(self, row: PayoutAccount) -> PayoutAccount:
        if row.stripe_account_id is None:  # pragma: no cover - callers check
            return row
        # Taken before the request: the answer is at least this new, so an event
        # created before it is older and must not overwrite it. Whole seconds, as
        # Stripe's `created`: an event from the same second wins the tie (it may be
        # the newer one; ignoring a newer event would be the worse error).
        as_of = utcnow().replace(microsecond=0)
        account = await self.stripe.retrieve_account(row.stripe_account_id)
        await self.repository.apply_state(
            row.id, account_state(account), as_of=as_of, event_id=None, synced_at=utcnow()
        )
        return await self._reload(row.user_id)

    async def _reload(self, user_id: str) -> PayoutAccount:
        row = await self.repository.get_by_user(user_id)
        if row is None:  # pragma: no cover - rows are never deleted
            raise PayoutAccountNotFound()
        return row

    async def _ensure_account(self, user_id: str) -> PayoutAccount:
        """The user's row with its Express account, creating the account on first call.

        Exactly one account per user, even under concurrent first calls: the first
        caller inserts the row and keeps it locked while it calls Stripe, so its twins
        wait on the row and then find the account. This holds a short row lock across
        one Stripe call, deliberately: it is the simplest way to make N concurrent
        first calls send ONE create request (Stripe answers concurrent requests with
        the same idempotency key with 409 errors, so letting them all race would turn
        a double-tap into visible failures). The lock covers only this user's row,
        only on the very first call, and waiters give up after 10 s (409, Retry-After).
        The deterministic idempotency key covers the other hole: a crash after
        Stripe created the account but before our commit replays the same account on
        retry (within Stripe's 24 h key window; the account.updated webhook adopts it
        after that, see ``_adopt``).
        """
        row = await self.repository.get_by_user(user_id)
        if row is not None and row.stripe_account_id is not None:
            return row
        try:
            await self.session.execute(_CREATION_LOCK_TIMEOUT)
            await self.repository.insert_placeholder(user_id)
            row = await self.repository.get_by_user(user_id, for_update=True)
            await self.session.execute(_DEFAULT_LOCK_TIMEOUT)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in _LOCK_SQLSTATES:
                raise PayoutAccountBusy(
                    "Another request is setting up this payout account; retry shortly."
                ) from exc
            raise
        if row is None:  # pragma: no cover - inserted or found above
            raise PayoutAccountNotFound()
        if row.stripe_account_id is not None:
            return row  # a concurrent first call created it while we waited
        # The key is deterministic per user (and database): a retry, even after a
        # crash, gets the same account.
        account = await call_with_key(
            self.session,
            "account",
            user_id,
            lambda key: self.stripe.create_express_account(
                user_id=user_id,
                capabilities=list(self.settings.connect_capabilities),
                country=self.settings.connect_account_country,
                idempotency_key=key,
            ),
        )
        # The create response describes the account as it was when created (also
        # when Stripe replays it for a retried key), so that is its as-of time; a
        # replay older than the sync age is re-read on the next GET.
        created = stripe_time(account.created) or utcnow()
        await self.repository.apply_state(
            row.id,
            account_state(account),
            as_of=created,
            event_id=None,
            synced_at=min(created, utcnow()),
            attach=True,
        )
        return await self._reload(user_id)

    async def _new_onboarding_link(self, row: PayoutAccount) -> AccountLink:
        if row.stripe_account_id is None:  # pragma: no cover - callers ensure it
            raise PayoutSetupIncomplete()
        refresh_url, return_url = landing_urls(
            self.settings, LinkState(user_id=row.user_id, stripe_account_id=row.stripe_account_id)
        )
        return await self.stripe.create_account_onboarding_link(
            account_id=row.stripe_account_id, refresh_url=refresh_url, return_url=return_url
        )

    async def _adopt(self, event_id: str, account: Account, as_of: datetime) -> bool:
        """An event for an account we have no row for. If Stripe says it is one of our
        users' (metadata we set at creation), it is the account we created and crashed
        before storing: store it now. Anything else is not ours and is ignored."""
        user_id = account.metadata.get("user_id")
        if user_id is None or await UserRepository(self.session).get(user_id) is None:
            log.info("account.updated %s: account %s is not ours", event_id, account.id)
            return False
        state = account_state(account)
        # Waits if a first call for this user is mid-creation, then conflicts on its row.
        if await self.repository.adopt(
            user_id, state, as_of=as_of, event_id=event_id, synced_at=utcnow()
        ):
            log.warning("adopted Stripe account %s for user %s", state.stripe_account_id, user_id)
            return True
        row = await self.repository.get_by_stripe_account(state.stripe_account_id)
        if row is not None:  # the concurrent creation just committed this very account
            return await self.repository.apply_state(
                row.id, state, as_of=as_of, event_id=event_id, synced_at=utcnow()
            )
        log.error(
            "account.updated %s: user %s already has another account than %s; ignored",
            event_id,
            user_id,
            state.stripe_account_id,
        )
        return False
