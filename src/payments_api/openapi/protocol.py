"""What every operation shares: problem responses (``Problem`` as
``application/problem+json`` with their ``code`` values), 429 on writes, and the
Idempotency-Key and X-Request-ID headers."""

from __future__ import annotations

from typing import Any

from payments_api.kit.middleware import REQUEST_ID_PATTERN
from payments_api.openapi.walk import operations
from payments_api.problems import GENERIC_CODES, IDEMPOTENCY_CODES, PROBLEM_MEDIA_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def declare_problem_codes(spec: dict[str, Any]) -> None:
    """Every problem response lists the ``code`` values it can carry: the route's own
    (``problem_responses``), the generic ones of its status, and the Idempotency-Key
    protocol's where the header is declared. Clients switch on these; the suite fails
    when a route answers a code missing here (tests/problem_codes.py)."""
    for operation in operations(spec):
        responses = operation.setdefault("responses", {})
        key = next(
            (
                p
                for p in operation.get("parameters", [])
                if p["in"] == "header" and p["name"].lower() == "idempotency-key"
            ),
            None,
        )
        if key is not None:
            for status, protocol in IDEMPOTENCY_CODES.items():
                if status == 400 and not key.get("required"):
                    continue  # a missing key is only refused where it is required
                response = responses.setdefault(str(status), _problem(_title(status)))
                response["x-problem-codes"] = [*response.get("x-problem-codes", []), *protocol]
        if any(p["name"] == "starting_after" for p in operation.get("parameters", [])):
            # Every cursor is parsed by kit.pagination.parse_cursor.
            response = responses.setdefault("422", _problem(_title(422)))
            response["x-problem-codes"] = [*response.get("x-problem-codes", []), "invalid_cursor"]
        for status, response in responses.items():
            if not status.isdigit() or int(status) < 400:
                continue
            codes = {*response.get("x-problem-codes", []), *GENERIC_CODES.get(int(status), ())}
            response["x-problem-codes"] = sorted(codes)
            listed = ", ".join(f"`{code}`" for code in response["x-problem-codes"])
            response["description"] = f"{response['description']}. Codes: {listed}."
        operation["responses"] = dict(sorted(responses.items()))


# Printable ASCII, as an HTTP header value must be (a UUID is what clients should send).
IDEMPOTENCY_KEY_SCHEMA = {"maxLength": 255, "minLength": 1, "pattern": "^[!-~]+$", "type": "string"}


def declare_optional_idempotency_keys(spec: dict[str, Any]) -> None:
    """The idempotency middleware honours ``Idempotency-Key`` on every write under
    /api/v1 except the webhooks, also where the route does not require it: those
    operations declare it as an optional header, so generated clients can send it."""
    for path, item in spec.get("paths", {}).items():
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/webhooks/"):
            continue
        for method, operation in item.items():
            if method not in {"post", "put", "patch", "delete"}:
                continue
            parameters = operation.setdefault("parameters", [])
            if any(
                p["in"] == "header" and p["name"].lower() == "idempotency-key" for p in parameters
            ):
                continue
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Optional here: when sent, a retry with the same key and "
                    "request replays the first response (Stripe's semantics).",
                    "schema": IDEMPOTENCY_KEY_SCHEMA,
                }
            )


REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your correlation id for this request: echoed in the `X-Request-ID` "
    "response header, in a problem's `request_id` and in the service's logs when it "
    f"matches `{REQUEST_ID_PATTERN}`; any other value is replaced by a generated id "
    "(never refused, so the schema does not constrain it).",
    "schema": {"type": "string"},
}


def declare_request_id(spec: dict[str, Any]) -> None:
    """kit/middleware.py reads ``X-Request-ID`` on every request, before routing: every
    operation declares it (optional), so generated clients can send it."""
    for operation in operations(spec):
        parameters = operation.setdefault("parameters", [])
        if not any(p["in"] == "header" and p["name"].lower() == "x-request-id" for p in parameters):
            parameters.append(dict(REQUEST_ID_PARAMETER))


def _title(status: int) -> str:
    return _STATUS_TITLES.get(status, "Error")


_STATUS_TITLES = {400: "Bad request", 409: "Conflict", 422: "Request validation failed"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}}


def declare_generic_problems(spec: dict[str, Any]) -> None:
    """Errors any route can answer: 500 (the last-resort handler) everywhere, 401 on
    every operation behind the bearer token, 400/413/415 wherever a body is read.
    A declared ``Idempotency-Key`` header comes from ``IdempotencyKeyDep``, which
    answers 400 without it: it is required."""
    for operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "header" and parameter["name"].lower() == "stripe-signature":
                # Read as optional so a missing header is our 400 webhook_signature_invalid
                # (the answer Stripe's dashboard shows), but Stripe always sends it.
                parameter["required"] = True
                parameter["schema"] = {"type": "string", "minLength": 1, "maxLength": 4096}
            if parameter["in"] == "header" and parameter["name"].lower() == "idempotency-key":
                parameter["required"] = True
                examples = parameter.get("schema", {}).get("examples", [])
                parameter["schema"] = dict(IDEMPOTENCY_KEY_SCHEMA)
                if examples:
                    parameter["schema"]["examples"] = examples
        responses = operation.setdefault("responses", {})
        responses.setdefault("500", _problem("Internal server error"))
        successes = [r for s, r in responses.items() if s.startswith("2")]
        if not (successes and all(set(r.get("content", {})) == {"text/html"} for r in successes)):
            # kit/middleware.py refuses NUL characters in any path or query (and lone
            # surrogates in bodies) before routing: every operation may answer it.
            responses.setdefault("400", _problem("Bad request"))
        if successes and all(set(r.get("content", {})) == {"text/html"} for r in successes):
            # A page for browsers (e.g. Stripe's onboarding landings) explains its
            # errors as a page too.
            page = {"text/html": {"schema": {"type": "string"}}}
            responses.setdefault("4XX", {"description": "An HTML error page", "content": page})
            responses.setdefault("5XX", {"description": "An HTML error page", "content": page})
        if "requestBody" in operation:
            # Answered before the route runs (problems.py, kit/middleware.py).
            responses.setdefault("400", _problem("Bad request (e.g. malformed_json)"))
            responses.setdefault("413", _problem("Request body too large"))
            responses.setdefault("415", _problem("Unsupported media type"))
        if operation.get("security"):
            responses.setdefault("401", _problem("Authentication required"))
        operation["responses"] = dict(sorted(responses.items()))


def declare_rate_limits(spec: dict[str, Any]) -> None:
    """Write routes under /api/v1 (not webhooks) answer 429 over the rate limits
    (kit/ratelimit.py)."""
    for path, item in spec.get("paths", {}).items():
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/webhooks/"):
            continue
        for method, operation in item.items():
            if method in ("post", "put", "patch", "delete"):
                responses = operation.setdefault("responses", {})
                responses.setdefault("429", _problem("Too many requests; see Retry-After"))
                operation["responses"] = dict(sorted(responses.items()))
