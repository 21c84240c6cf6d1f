"""RFC 9457 problem details: the one error format of the API.

Every error leaves the service as ``application/problem+json`` with a stable machine
``code``; domains subclass :class:`ProblemError` with noun leaves.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is (e.g. ['body', 'amount']).")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://payments-api.dev/problems/not_found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "No such resource.",
                    "instance": "/api/v1/orders/ord_123",
                    "code": "not_found",
                    "request_id": "6f0c1b1e6a0f4d0c9a3f0e1d2c3b4a59",
                }
            ]
        },
    )

    type: str = Field(description="URI identifying the problem type.")
    title: str = Field(description="Short, human-readable summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(None, description="Explanation specific to this occurrence.")
    instance: str | None = Field(None, description="The request path.")
    code: str = Field(description="Stable machine-readable error code.")
    message: str | None = Field(None, description="Same as detail (for older clients).")
    request_id: str | None = Field(None, description="Correlates with the service's logs.")
    errors: list[ValidationIssue] | None = Field(None, description="Validation failures.")


class ProblemError(Exception):
    """Base of every error the API reports on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extensions = extensions


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Not found"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(
            detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, **extensions
        )


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class ServiceUnavailable(ProblemError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class MalformedJson(ProblemError):
    status = 400
    code = "malformed_json"
    title = "Malformed JSON body"


class UnsupportedMediaType(ProblemError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class PayloadTooLarge(ProblemError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


_STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    402: ("payment_declined", "Payment declined"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_error", "Request validation failed"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal server error"),
    502: ("payment_provider_error", "The payment provider rejected the request"),
    503: ("service_unavailable", "Service unavailable"),
}


def problem_response(
    request_path: str,
    request_id: str | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None,
    base_url: str,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"{base_url.rstrip('/')}/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request_path,
        "code": code,
        "message": detail,
        "request_id": request_id,
    }
    if extensions:
        body.update(extensions)
    response = JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _base_url(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return settings.problem_base_url if settings else "about:blank"


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ProblemError):  # pragma: no cover - registration guarantees it
        raise TypeError(exc)
    return problem_response(
        request.url.path,
        _request_id(request),
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        base_url=_base_url(request),
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # pragma: no cover
        raise TypeError(exc)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return await handle_problem(request, MalformedJson("The request body is not valid JSON."))
    issues = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in errors
    ]
    return problem_response(
        request.url.path,
        _request_id(request),
        status=422,
        code="validation_error",
        title="Request validation failed",
        detail="; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues),
        base_url=_base_url(request),
        extensions={"errors": issues},
    )


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover
        raise TypeError(exc)
    code, title = _STATUS_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such route."
    return problem_response(
        request.url.path,
        _request_id(request),
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        base_url=_base_url(request),
        headers=dict(exc.headers or {}),
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring problem+json bodies for ``statuses``."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 500}):
        _code, title = _STATUS_CODES.get(status, ("http_error", "HTTP error"))
        declared[status] = {
            "model": Problem,
            "description": title,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return declared
