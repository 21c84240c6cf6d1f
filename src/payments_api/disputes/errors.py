from __future__ import annotations

from payments_api.problems import ProblemError


class DisputeNotFound(ProblemError):
    status = 404
    code = "dispute_not_found"
    title = "No such dispute"
