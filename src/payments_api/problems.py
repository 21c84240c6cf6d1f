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


class InvalidCharacters(ProblemError):
    """NUL characters or lone UTF-16 surrogates in a path, query or body: PostgreSQL
    cannot store either, so they are refused before any route runs."""

    status = 400
    code = "invalid_characters"
    title = "The request contains characters that cannot be stored"


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
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path only; a path
        # served by several routes (GET and POST /escrows) allows all of theirs.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        request.url.path,
        _request_id(request),
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        base_url=_base_url(request),
        headers=headers,
    )


def _allowed_methods(request: Request) -> list[str]:
    path = request.scope["path"]
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        route_methods = getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods.update(route_methods)
    methods.discard("HEAD")
    return sorted(methods)


def _leaf_routes(routes: Any) -> Any:
    """Routes with a path, through FastAPI's included-router wrappers (our routers are
    included without a prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


# Codes any operation may answer at a status it declares, without naming them: the
# framework's and the middleware's own problems (validation, authentication, the
# Idempotency-Key protocol, limits, the last-resort handler). Everything else -- each
# domain's ProblemError leaves -- a route names in problem_responses().
GENERIC_CODES: dict[int, tuple[str, ...]] = {
    400: ("bad_request", "invalid_characters", "malformed_json"),
    401: ("unauthorized", "invalid_token"),
    403: ("forbidden",),
    404: ("not_found",),
    405: ("method_not_allowed",),
    409: ("conflict",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("validation_error",),
    429: ("rate_limited",),
    500: ("internal_error",),
    503: ("service_unavailable",),
}
# The Idempotency-Key protocol's answers, declared wherever the header is (openapi.py).
IDEMPOTENCY_CODES: dict[int, tuple[str, ...]] = {
    400: ("idempotency_key_required",),
    409: ("idempotency_key_in_use",),
    422: ("idempotency_key_reused",),
}


def problem_responses(*declared: int | type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring problem+json bodies.

    ``declared`` are statuses (each carrying its generic codes, GENERIC_CODES) and the
    ProblemError classes the route can raise (each its own status and code). The codes
    go into the response's ``x-problem-codes`` and description; tests fail when a route
    answers a code it does not declare (tests/problem_codes.py).
    """
    codes: dict[int, set[str]] = {500: set(GENERIC_CODES[500])}
    for item in declared:
        if isinstance(item, int):
            codes.setdefault(item, set()).update(GENERIC_CODES.get(item, ()))
        else:
            codes.setdefault(item.status, set()).add(item.code)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(codes):
        _code, title = _STATUS_CODES.get(status, ("http_error", "HTTP error"))
        responses[status] = {
            "model": Problem,
            "description": title,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "x-problem-codes": sorted(codes[status]),
        }
    return responses
