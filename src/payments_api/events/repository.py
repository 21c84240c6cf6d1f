"""The SQL of events, endpoints and deliveries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import driver_connection
from payments_api.events.models import (
    BalanceAlert,
    DeliveryAttempt,
    EventDelivery,
    OutboxEvent,
    WebhookEndpoint,
)


@dataclass(frozen=True, slots=True)
class CrossedAlert:
    user_id: str
    currency: str
    threshold: int
    below: bool
    available: int


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    event_id: int
    endpoint_id: int
    attempt: int
    event_type: str
    event_created_at: datetime
    user_ids: list[str]
    payload: dict[str, Any]
    url: str
    secrets: list[str]
    """The current secret, and the previous one while its overlap lasts."""


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one delivery attempt got, named as the attempt row's columns."""

    status_code: int | None
    latency_ms: int
    response_excerpt: str | None
    error: str | None


_CLAIM = text(
    """
    WITH due AS (
        SELECT d.id
        FROM event_deliveries AS d
        JOIN webhook_endpoints AS w ON w.id = d.endpoint_id AND w.status = 'enabled'
        WHERE d.status = 'pending'
          AND d.next_attempt_at <= CAST(:now AS timestamptz)
          AND (d.lease_until IS NULL OR d.lease_until < CAST(:now AS timestamptz))
          AND (CAST(:event_id AS bigint) IS NULL OR d.event_id = CAST(:event_id AS bigint))
          AND (CAST(:delivery_id AS bigint) IS NULL OR d.id = CAST(:delivery_id AS bigint))
        ORDER BY d.next_attempt_at, d.id
        LIMIT 1
        FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE event_deliveries AS d
        SET attempt_count = d.attempt_count + 1,
            lease_until = CAST(:now AS timestamptz) + make_interval(secs => :lease_seconds),
            updated_at = now()
        FROM due
        WHERE d.id = due.id
        RETURNING d.id, d.event_id, d.endpoint_id, d.attempt_count
    )
    SELECT claimed.id, claimed.event_id, claimed.endpoint_id, claimed.attempt_count AS attempt,
           e.type AS event_type, e.created_at AS event_created_at, e.user_ids, e.payload,
           w.url, w.secret,
           CASE WHEN w.previous_secret_expires_at > CAST(:now AS timestamptz)
                THEN w.previous_secret END AS previous_secret
    FROM claimed
    JOIN events AS e ON e.id = claimed.event_id
    JOIN webhook_endpoints AS w ON w.id = claimed.endpoint_id
    """
)


# Moves each (user, currency) alert to the side of its threshold the available balance
# now is on, as a common table expression named ``alerts`` over the common table
# expression ``observed`` (user_id, currency, available: the available balances a
# posting left, which the ledger's statement computes). The ledger runs it inside the
# statement that applies the balances (no round trip of its own); rows: the alerts that
# moved.
CROSS_BALANCE_ALERTS_CTE = """
    alerts AS (
        UPDATE balance_alerts AS a
        SET below = (v.available < a.threshold)
        FROM observed AS v
        WHERE a.user_id = v.user_id AND a.currency = v.currency
          AND a.below IS DISTINCT FROM (v.available < a.threshold)
        RETURNING a.user_id, a.currency, a.threshold, a.below, v.available
    )
"""


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- feed -----------------------------------------------------------------------

    async def page(
        self,
        *,
        user_id: str | None,
        type: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[OutboxEvent]:
        query = select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit + 1)
        if user_id is not None:
            query = query.where(OutboxEvent.user_ids.contains([user_id]))
        if type is not None:
            query = query.where(OutboxEvent.type == type)
        if before_id is not None:
            query = query.where(OutboxEvent.id < before_id)
        return list((await self.session.scalars(query)).all())

    async def get(self, event_id: int) -> OutboxEvent | None:
        return await self.session.get(OutboxEvent, event_id)

    async def by_change_key(self, change_key: str) -> OutboxEvent | None:
        return (
            await self.session.scalars(
                select(OutboxEvent).where(OutboxEvent.change_key == change_key)
            )
        ).one_or_none()

    # --- endpoints ------------------------------------------------------------------

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        self.session.add(endpoint)
        await self.session.flush()
        await self.session.refresh(endpoint)
        return endpoint

    async def endpoint(
        self, endpoint_id: int, *, for_update: bool = False
    ) -> WebhookEndpoint | None:
        query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.scalars(query)).one_or_none()

    async def endpoints(self, *, before_id: int | None, limit: int) -> list[WebhookEndpoint]:
        query = select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(WebhookEndpoint.id < before_id)
        return list((await self.session.scalars(query)).all())

    # --- deliveries -----------------------------------------------------------------

    async def deliveries(
        self, endpoint_id: int, *, before_id: int | None, limit: int
    ) -> list[tuple[EventDelivery, str]]:
        query = (
            select(EventDelivery, OutboxEvent.type)
            .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
            .where(EventDelivery.endpoint_id == endpoint_id)
            .order_by(EventDelivery.id.desc())
            .limit(limit + 1)
        )
        if before_id is not None:
            query = query.where(EventDelivery.id < before_id)
        return [(row[0], row[1]) for row in (await self.session.execute(query)).all()]

    async def delivery(self, delivery_id: int) -> tuple[EventDelivery, str] | None:
        row = (
            await self.session.execute(
                select(EventDelivery, OutboxEvent.type)
                .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
                .where(EventDelivery.id == delivery_id)
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1])

    async def attempts(self, delivery_ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
        if not delivery_ids:
            return {}
        rows = (
            await self.session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
                .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.id)
            )
        ).all()
        grouped: dict[int, list[DeliveryAttempt]] = {}
        for attempt in rows:
            grouped.setdefault(attempt.delivery_id, []).append(attempt)
        return {key: value[-50:] for key, value in grouped.items()}

    async def redeliver(self, delivery_id: int) -> bool:
        """Due now again (a failed one gets one more attempt; a pending one runs now)."""
        result = await self.session.execute(
            update(EventDelivery)
            .where(EventDelivery.id == delivery_id, EventDelivery.status != "succeeded")
            .values(
                status="pending",
                next_attempt_at=text("now()"),
                lease_until=None,
                updated_at=text("now()"),
            )
            .returning(EventDelivery.id)
        )
        return result.scalar_one_or_none() is not None

    async def claim(
        self,
        *,
        now: datetime,
        lease_seconds: float,
        event_id: int | None = None,
        delivery_id: int | None = None,
    ) -> ClaimedDelivery | None:
        row = (
            await self.session.execute(
                _CLAIM,
                {
                    "event_id": event_id,
                    "delivery_id": delivery_id,
                    "lease_seconds": lease_seconds,
                    "now": now,
                },
            )
        ).one_or_none()
        if row is None:
            return None
        # The columns are named as ClaimedDelivery's fields, but for the two secrets.
        delivery = dict(row._mapping)
        secret, previous_secret = delivery.pop("secret"), delivery.pop("previous_secret")
        secrets = [secret] + ([previous_secret] if previous_secret else [])
        return ClaimedDelivery(**delivery, secrets=secrets)

    async def record_attempt(
        self,
        claimed: ClaimedDelivery,
        outcome: AttemptOutcome,
        *,
        next_attempt_in_seconds: float | None,
        disable_after_hours: int,
        now: datetime,
    ) -> bool:
        """Store the outcome of the claimed attempt; False when the lease was lost (an
        admin redelivered it meanwhile), in which case only the attempt row is kept."""
        self.session.add(
            DeliveryAttempt(
                delivery_id=claimed.id, attempt=claimed.attempt, attempted_at=now, **asdict(outcome)
            )
        )
        succeeded = outcome.error is None
        next_at: datetime | None
        if succeeded:
            status, next_at = "succeeded", None
        elif next_attempt_in_seconds is None:
            status, next_at = "failed", None
        else:
            status = "pending"
            next_at = now + timedelta(seconds=next_attempt_in_seconds)
        result = await self.session.execute(
            update(EventDelivery)
            .where(
                EventDelivery.id == claimed.id,
                EventDelivery.attempt_count == claimed.attempt,
                EventDelivery.status == "pending",
            )
            .values(status=status, next_attempt_at=next_at, lease_until=None, updated_at=now)
            .returning(EventDelivery.id)
        )
        still_ours = result.scalar_one_or_none() is not None
        if succeeded:
            await self.session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.id == claimed.endpoint_id,
                    WebhookEndpoint.failing_since.is_not(None),
                )
                .values(failing_since=None, updated_at=now)
            )
        else:
            await self.session.execute(
                text(
                    """
                    UPDATE webhook_endpoints
                    SET failing_since = coalesce(failing_since, CAST(:now AS timestamptz)),
                        status = CASE
                            WHEN failing_since <= CAST(:disable_before AS timestamptz)
                            THEN 'disabled' ELSE status END,
                        disabled_reason = CASE
                            WHEN failing_since <= CAST(:disable_before AS timestamptz)
                            THEN CAST(:reason AS varchar)
                            ELSE disabled_reason END,
                        updated_at = CAST(:now AS timestamptz)
                    WHERE id = :endpoint_id
                    """
                ),
                {
                    "endpoint_id": claimed.endpoint_id,
                    "disable_before": now - timedelta(hours=disable_after_hours),
                    "now": now,
                    "reason": f"Every delivery failed for {disable_after_hours} hours.",
                },
            )
        return still_ours

    async def prune(self, before: datetime) -> int:
        """Delete events older than ``before`` with everything hanging off them, except
        events a delivery still waits to send; how many events went."""
        deleted = await self.session.scalar(
            text(
                """
                WITH old AS (
                    SELECT e.id FROM events AS e
                    WHERE e.created_at < CAST(:before AS timestamptz)
                      AND NOT EXISTS (
                          SELECT 1 FROM event_deliveries AS d
                          WHERE d.event_id = e.id AND d.status = 'pending')
                    LIMIT 10000
                ), attempts AS (
                    DELETE FROM event_delivery_attempts AS a
                    USING event_deliveries AS d, old
                    WHERE a.delivery_id = d.id AND d.event_id = old.id
                ), deliveries AS (
                    DELETE FROM event_deliveries AS d USING old WHERE d.event_id = old.id
                ), receipts AS (
                    DELETE FROM email_receipts AS r USING old WHERE r.event_id = old.id
                ), gone AS (
                    -- The foreign keys are NO ACTION: checked at the end of the
                    -- statement, when the rows above are gone too.
                    DELETE FROM events AS e USING old WHERE e.id = old.id RETURNING e.id
                )
                SELECT count(*) FROM gone
                """
            ),
            {"before": before},
        )
        return int(deleted or 0)

    # --- balance alerts ---------------------------------------------------------------

    async def set_balance_alert(self, user_id: str, currency: str, threshold: int) -> BalanceAlert:
        row = (
            await self.session.execute(
                text(
                    """
                    INSERT INTO balance_alerts (user_id, currency, threshold)
                    VALUES (:user_id, :currency, :threshold)
                    ON CONFLICT (user_id, currency)
                    DO UPDATE SET threshold = EXCLUDED.threshold, below = false
                    RETURNING user_id, currency, threshold, below
                    """
                ),
                {"user_id": user_id, "currency": currency, "threshold": threshold},
            )
        ).one()
        return BalanceAlert(
            user_id=row.user_id, currency=row.currency, threshold=row.threshold, below=row.below
        )

    async def balance_alerts(self, user_id: str) -> list[BalanceAlert]:
        return list(
            (
                await self.session.scalars(
                    select(BalanceAlert)
                    .where(BalanceAlert.user_id == user_id)
                    .order_by(BalanceAlert.currency)
                )
            ).all()
        )

    async def cross_balance_alerts(
        self, available: list[tuple[str, str, int]]
    ) -> list[CrossedAlert]:
        """Move each (user, currency) alert to the side of its threshold the available
        balance is now on; the alerts that moved, with ``below`` as it now is. On the
        session's asyncpg connection: it runs with every posting to a user's available."""
        driver = await driver_connection(self.session)
        rows = await driver.fetch(
            """
            UPDATE balance_alerts AS a
            SET below = (v.available < a.threshold)
            FROM unnest($1::varchar[], $2::varchar[], $3::bigint[])
                 AS v(user_id, currency, available)
            WHERE a.user_id = v.user_id AND a.currency = v.currency
              AND a.below IS DISTINCT FROM (v.available < a.threshold)
            RETURNING a.user_id, a.currency, a.threshold, a.below, v.available
            """,
            [user for user, _, _ in available],
            [currency for _, currency, _ in available],
            [amount for _, _, amount in available],
        )
        return [
            CrossedAlert(
                row["user_id"], row["currency"], row["threshold"], row["below"], row["available"]
            )
            for row in rows
        ]
