from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from payments_api.events.types import EventType
from payments_api.money import Currency, MinorAmount


class EventData(BaseModel):
    object: dict[str, Any] = Field(
        description="The resource as the REST API returns it (for a feed reader, as that "
        "reader may see it): an order, escrow, withdrawal, refund, dispute, payout account "
        "or balance, depending on `type`."
    )


class EventRead(BaseModel):
    """A change the platform's apps may care about."""

    id: str = Field(examples=["evt_42"])
    object: Literal["event"] = "event"
    type: EventType
    created_at: datetime
    user_ids: list[str] = Field(description="The users the event concerns.")
    data: EventData


class EventList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[EventRead]
    has_more: bool


EndpointStatus = Literal["enabled", "disabled"]


class WebhookEndpointCreate(BaseModel):
    url: str = Field(
        min_length=8,
        max_length=2048,
        description="Where events are POSTed. In production: https, and not resolving to a "
        "private, loopback or link-local address (checked again at every send).",
        examples=["https://platform.example/hooks/payments"],
    )
    event_types: list[EventType] = Field(
        default_factory=list,
        max_length=64,
        description="The types to send; empty sends every type.",
    )
    description: str | None = Field(None, max_length=500)


class WebhookEndpointRead(BaseModel):
    id: str = Field(examples=["we_3"])
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    description: str | None
    event_types: list[EventType]
    status: EndpointStatus
    disabled_reason: str | None
    failing_since: datetime | None = Field(
        description="First failed delivery with no success since; after "
        "`PAYMENTS_EVENTS_DISABLE_AFTER_HOURS` the endpoint is disabled."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="While set and in the future, deliveries carry a signature by the "
        "previous secret too (rotation overlap)."
    )
    created_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointRead):
    secret: str = Field(
        description="The signing secret (`whsec_…`), shown only in this response.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookEndpointList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[WebhookEndpointRead]
    has_more: bool


class SecretRotation(BaseModel):
    overlap_seconds: int = Field(
        86_400,
        ge=0,
        le=7 * 86_400,
        description="How long the old secret keeps signing beside the new one.",
    )


class DeliveryAttemptRead(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = Field(description="The first bytes of the response body.")
    error: str | None = Field(
        description="timeout, connection_error, target_refused, redirect or http_status."
    )


DeliveryStatus = Literal["pending", "succeeded", "failed"]


class DeliveryRead(BaseModel):
    id: str = Field(examples=["del_9"])
    object: Literal["event_delivery"] = "event_delivery"
    event_id: str
    event_type: EventType
    endpoint_id: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="When the next retry is due.")
    created_at: datetime
    attempts: list[DeliveryAttemptRead] = Field(description="Newest last, at most 50.")


class DeliveryList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[DeliveryRead]
    has_more: bool


class BalanceAlertSet(BaseModel):
    currency: Currency
    threshold: MinorAmount = Field(
        description="`balance.low` is sent once when available falls below this, and again "
        "only after it was back at or above it."
    )


class BalanceAlertRead(BaseModel):
    object: Literal["balance_alert"] = "balance_alert"
    currency: Currency
    threshold: int
    below: bool
    available: int | None = Field(
        None, description="In `balance.low` events: available after the fall."
    )
