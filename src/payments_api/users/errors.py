from __future__ import annotations

from payments_api.problems import ProblemError


class UserNotFound(ProblemError):
    status = 404
    code = "user_not_found"
    title = "No such user"
