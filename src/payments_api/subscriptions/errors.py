from __future__ import annotations

from payments_api.problems import ProblemError


class PlanNotFound(ProblemError):
    status = 422
    code = "plan_not_found"
    title = "No such active recurring price"


class SubscriptionNotFound(ProblemError):
    status = 404
    code = "subscription_not_found"
    title = "No such subscription"


class SubscriptionExists(ProblemError):
    status = 409
    code = "subscription_exists"
    title = "The caller already has a subscription in this plan family"


class SubscriptionNotActive(ProblemError):
    status = 409
    code = "subscription_not_active"
    title = "The subscription cannot be changed in its current state"


class SubscriptionNotResumable(ProblemError):
    status = 409
    code = "subscription_not_resumable"
    title = "Only a subscription set to cancel at period end, before that end, can resume"


class PlanChangeInvalid(ProblemError):
    status = 422
    code = "plan_change_invalid"
    title = "The new price must be another active price of the same currency"


class SubscriptionNotPaused(ProblemError):
    status = 409
    code = "subscription_not_paused"
    title = "The subscription's payment collection is not paused"


class SubscriptionPauseInvalid(ProblemError):
    status = 422
    code = "subscription_pause_invalid"
    title = "The pause cannot end in the past"
