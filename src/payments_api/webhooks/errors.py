from __future__ import annotations

from payments_api.problems import ProblemError


class WebhookSignatureInvalid(ProblemError):
    status = 400
    code = "webhook_signature_invalid"
    title = "The webhook signature is missing or invalid"


class WebhookPayloadInvalid(ProblemError):
    status = 400
    code = "webhook_payload_invalid"
    title = "The webhook payload is not a Stripe event"


class WebhookEndpointNotConfigured(ProblemError):
    status = 404
    code = "not_found"
    title = "Not found"


class WebhookProcessingFailed(ProblemError):
    status = 500
    code = "webhook_processing_failed"
    title = "The event was stored but could not be applied yet; it will be retried"


class WebhookEventNotFound(ProblemError):
    status = 404
    code = "webhook_event_not_found"
    title = "No such webhook event"
