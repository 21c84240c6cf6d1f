from __future__ import annotations

from payments_api.problems import ProblemError


class EarningsError(ProblemError):
    status = 422
    code = "earnings_error"
    title = "Earnings error"


class InvalidTimezone(EarningsError):
    status = 422
    code = "invalid_timezone"
    title = "Unknown time zone"


class InvalidDateRange(EarningsError):
    status = 422
    code = "invalid_date_range"
    title = "Invalid date range"
