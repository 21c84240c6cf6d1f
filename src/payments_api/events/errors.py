from __future__ import annotations

from payments_api.problems import ProblemError


class WebhookEndpointNotFound(ProblemError):
    status = 404
    code = "webhook_endpoint_not_found"
    title = "No such webhook endpoint"


class DeliveryNotFound(ProblemError):
    status = 404
    code = "event_delivery_not_found"
    title = "No such event delivery"


class WebhookUrlRefused(ProblemError):
    status = 422
    code = "webhook_url_refused"
    title = "Events cannot be sent to this URL"


class EventTypeInvalid(ProblemError):
    status = 422
    code = "invalid_event_type"
    title = "Unknown event type"
