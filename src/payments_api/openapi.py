"""OpenAPI shaped for generated clients (TypeScript, Swift, Kotlin).

FastAPI's defaults are adjusted in one place, generically, so routes added later get
the same treatment:

- every error response is the shared ``Problem`` schema as ``application/problem+json``
  (FastAPI's own 422 schema is replaced); every operation declares 500, and every
  operation behind the bearer token declares 401;
- inline string enums become named component schemas (``CheckoutSessionPurpose``), and
  inline request/response objects become ``<OperationId>Request``/``Response``
  components, because generators name types after components (Swift and Kotlin would
  otherwise invent ``Body_...`` or ``Operation200Response`` names);
- integer money fields say that they are in minor units;
- every JSON request and success response has an example (an explicit one wins; one
  is assembled from the fields' own examples otherwise);
- the document is deterministic so the committed copy can be diffed.

``tests/contract/test_openapi.py`` holds the rules these passes keep.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from payments_api.kit.middleware import REQUEST_ID_PATTERN
from payments_api.money import (
    CURRENCY_EXPONENTS,
    DEFAULT_AMOUNT_LIMITS,
    CurrencyLimits,
    LimitedOperation,
)
from payments_api.problems import GENERIC_CODES, IDEMPOTENCY_CODES, PROBLEM_MEDIA_TYPE, Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _untitle_parameters(spec: dict[str, Any]) -> None:
    """Drop the ``title`` FastAPI gives each parameter's schema (``Type``, ``Limit``…).

    Generators take a titled inline schema for a model to declare: Swift's named one
    ``Type`` -- a reserved word -- and renamed it; a parameter needs no model at all.
    """
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                parameter.get("schema", {}).pop("title", None)


LIMITED_OPERATIONS: dict[str, tuple[LimitedOperation, str]] = {
    "createCheckoutSession": ("topup", "Top-ups and direct payments"),
    "createTopup": ("topup", "Top-ups"),
    "createWithdrawal": ("withdrawal", "Withdrawals"),
    "createWalletRefund": ("cashout", "Wallet refunds"),
}


def limits_description(limits: Mapping[str, CurrencyLimits], operation: LimitedOperation) -> str:
    """A Markdown table of one operation's per-currency limits (this configuration's)."""
    rows = [
        f"| `{currency}` | {table.of(operation).min} | {table.of(operation).max} |"
        for currency, table in sorted(limits.items())
    ]
    return "\n".join(
        [
            "| currency | minimum | maximum |",
            "|---|---|---|",
            *rows,
        ]
    )


def _describe_limits(spec: dict[str, Any], limits: Mapping[str, CurrencyLimits]) -> None:
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            found = LIMITED_OPERATIONS.get(operation.get("operationId", ""))
            if found is None:
                continue
            kind, what = found
            operation["description"] = (
                f"{operation.get('description', '')}\n\n{what} per currency, in the "
                "currency's major unit (the `amount` field is in minor units); another "
                "currency is refused with `currency_not_supported`:\n\n"
                + limits_description(limits, kind)
            ).strip()


def build_openapi(
    app: FastAPI, *, limits: Mapping[str, CurrencyLimits] | None = None
) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        webhooks=app.webhooks.routes,
        tags=[
            {"name": "me", "description": "The calling user."},
            {"name": "balance", "description": "Wallet balances and ledger entries."},
            {"name": "checkout", "description": "Stripe Checkout pay-ins (top-up, order, escrow)."},
            {"name": "topups", "description": "PaymentIntent top-ups for mobile apps."},
            {
                "name": "payment-methods",
                "description": "Saved cards: SetupIntents, default card, removal.",
            },
            {"name": "orders", "description": "Pay-in history and status."},
            {"name": "escrow", "description": "Jobs paid into escrow and settled to payees."},
            {"name": "earnings", "description": "What payees earned."},
            {"name": "payout-account", "description": "Stripe Connect Express onboarding."},
            {"name": "payouts", "description": "Withdrawals and payouts to payees."},
            {"name": "projects", "description": "A payee's earning contexts and their wallets."},
            {
                "name": "subscriptions",
                "description": "Plans from Stripe Billing and the caller's subscriptions.",
            },
            {"name": "refunds", "description": "Refunds of pay-ins."},
            {"name": "disputes", "description": "Card disputes (chargebacks)."},
            {"name": "reconciliation", "description": "The ledger matched against Stripe."},
            {"name": "sandbox", "description": "Local pages of the offline Stripe sandbox."},
            {"name": "webhooks", "description": "Stripe webhook endpoints (signed)."},
            {"name": "wallets", "description": "Debits of a user's wallet by a service."},
            {
                "name": "events",
                "description": "Events to the platform's apps: feeds, endpoints, deliveries "
                "(the `webhooks` section lists every event's body).",
            },
            {
                "name": "outgoing-events",
                "description": "What this service POSTs to registered endpoints, signed "
                "per Standard Webhooks (one entry per event type).",
            },
            {"name": "admin", "description": "Operator actions (role admin), all audited."},
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for path_item in spec.get("webhooks", {}).values():
        for operation in path_item.values():
            # What the receiver answers: any 2xx acknowledges; anything else is retried.
            operation["responses"] = {
                "2XX": {"description": "Received; anything else is retried (docs/events.md)."}
            }
            for parameter in operation.get("parameters", []):
                parameter.get("schema", {}).pop("title", None)
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem_schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas["Problem"] = problem_schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
                    if status == "422":
                        response["description"] = "Request validation failed"
    _restore_null_examples(spec)
    _untitle_parameters(spec)
    _declare_generic_problems(spec)
    _declare_rate_limits(spec)
    _declare_optional_idempotency_keys(spec)
    _declare_request_id(spec)
    _declare_problem_codes(spec)
    _describe_limits(spec, DEFAULT_AMOUNT_LIMITS if limits is None else limits)
    _name_inline_schemas(spec)
    _name_currency_enum(schemas)
    _name_inline_enums(spec)
    _document_minor_units(schemas)
    _require_response_fields(spec)
    _add_examples(spec)
    spec["components"]["schemas"] = dict(sorted(schemas.items()))
    return spec


def _nullable(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(spec, schema)
    return schema.get("type") == "null" or any(
        branch.get("type") == "null" for branch in schema.get("anyOf", [])
    )


def _with_nulls(spec: dict[str, Any], schema: dict[str, Any], example: Any) -> Any:
    """``example`` with the required, nullable fields that are missing set to null."""
    schema = _resolve(spec, schema)
    if isinstance(example, list) and isinstance(schema.get("items"), dict):
        return [_with_nulls(spec, schema["items"], item) for item in example]
    if not isinstance(example, dict) or "properties" not in schema:
        return example
    restored = dict(example)
    for name, prop in schema["properties"].items():
        if name in restored:
            branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
            if len(branches) == 1:
                restored[name] = _with_nulls(spec, branches[0], restored[name])
        elif name in schema.get("required", []) and _nullable(spec, prop):
            restored[name] = None
    return restored


def _restore_null_examples(spec: dict[str, Any]) -> None:
    """FastAPI drops every null from the document (``exclude_none``), examples
    included, which leaves a model's own example without its required nullable fields
    (and so invalid against its schema). Put them back."""
    for schema in spec["components"]["schemas"].values():
        if isinstance(schema.get("examples"), list):
            schema["examples"] = [_with_nulls(spec, schema, e) for e in schema["examples"]]


def _declare_problem_codes(spec: dict[str, Any]) -> None:
    """Every problem response lists the ``code`` values it can carry: the route's own
    (``problem_responses``), the generic ones of its status, and the Idempotency-Key
    protocol's where the header is declared. Clients switch on these; the suite fails
    when a route answers a code missing here (tests/problem_codes.py)."""
    for operation in _operations(spec):
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


def _declare_optional_idempotency_keys(spec: dict[str, Any]) -> None:
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


def _declare_request_id(spec: dict[str, Any]) -> None:
    """kit/middleware.py reads ``X-Request-ID`` on every request, before routing: every
    operation declares it (optional), so generated clients can send it."""
    for operation in _operations(spec):
        parameters = operation.setdefault("parameters", [])
        if not any(p["in"] == "header" and p["name"].lower() == "x-request-id" for p in parameters):
            parameters.append(dict(REQUEST_ID_PARAMETER))


def _title(status: int) -> str:
    return _STATUS_TITLES.get(status, "Error")


_STATUS_TITLES = {400: "Bad request", 409: "Conflict", 422: "Request validation failed"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}}


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    methods = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    return [
        operation
        for path_item in spec.get("paths", {}).values()
        for method, operation in path_item.items()
        if method in methods
    ]


def _declare_generic_problems(spec: dict[str, Any]) -> None:
    """Errors any route can answer: 500 (the last-resort handler) everywhere, 401 on
    every operation behind the bearer token, 400/413/415 wherever a body is read.
    A declared ``Idempotency-Key`` header comes from ``IdempotencyKeyDep``, which
    answers 400 without it: it is required."""
    for operation in _operations(spec):
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


def _declare_rate_limits(spec: dict[str, Any]) -> None:
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


def _pascal(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "title"} == {
        k: v for k, v in b.items() if k != "title"
    }


def _unique_name(schemas: dict[str, Any], definition: dict[str, Any], *wanted: str) -> str:
    """The first free name of ``wanted`` (or one naming the same schema already), else
    the last one numbered."""
    for name in wanted:
        if name not in schemas or _same(schemas[name], definition):
            return name
    number = 2
    while f"{wanted[-1]}{number}" in schemas:
        number += 1
    return f"{wanted[-1]}{number}"


def _name_inline_schemas(spec: dict[str, Any]) -> None:
    """Inline object schemas of request bodies and success responses become named
    components (``<OperationId>Request`` / ``<OperationId>Response``)."""
    schemas = spec["components"]["schemas"]
    for operation in _operations(spec):
        base = _pascal(str(operation.get("operationId", "Operation")))
        media_sets = [("Request", operation.get("requestBody", {}).get("content", {}))]
        media_sets += [
            ("Response", response.get("content", {}))
            for status, response in operation.get("responses", {}).items()
            if status.startswith("2")
        ]
        for suffix, content in media_sets:
            for media_type, media in content.items():
                schema = media.get("schema")
                if (
                    "json" not in media_type
                    or not isinstance(schema, dict)
                    or schema.get("type") != "object"
                ):
                    continue
                definition = {"title": f"{base}{suffix}", **schema}
                same = [
                    n for n, d in schemas.items() if n.endswith(suffix) and _same(d, definition)
                ]
                name = same[0] if same else _unique_name(schemas, definition, f"{base}{suffix}")
                schemas.setdefault(name, definition)
                media["schema"] = {"$ref": f"#/components/schemas/{name}"}


_ENUM_KEYS = ("type", "enum")
_SCHEMA_NAME_SUFFIXES = re.compile(r"(Create|Read|Update|Request|Response)$")


def _inline_enum(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and "$ref" not in schema
        and schema.get("type") == "string"
        and isinstance(schema.get("enum"), list)
        and len(schema["enum"]) > 1
    )


def _hoist_enum(
    schemas: dict[str, Any],
    by_values: dict[tuple[str, ...], str],
    holder: Any,
    key: Any,
    *names: str,
) -> None:
    """Replace ``holder[key]`` (an inline enum) by a $ref to a named enum component.
    The same set of values anywhere in the document maps to one component."""
    inline = holder[key]
    values = tuple(inline["enum"])
    if values not in by_values:
        definition = {"enum": list(values), "type": "string"}
        name = _unique_name(schemas, definition, *names)
        schemas[name] = {"enum": list(values), "title": name, "type": "string"}
        by_values[values] = name
    kept = {k: v for k, v in inline.items() if k not in (*_ENUM_KEYS, "title")}
    holder[key] = {"$ref": f"#/components/schemas/{by_values[values]}", **kept}


def _enum_slots(schema: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(holder, key) pairs where an inline enum sits directly or as an anyOf branch
    (``Literal[...] | None``) or as array items."""
    slots: list[tuple[Any, Any]] = []
    if _inline_enum(schema):
        return slots
    for branch_index, branch in enumerate(schema.get("anyOf", [])):
        if _inline_enum(branch):
            slots.append((schema["anyOf"], branch_index))
    if _inline_enum(schema.get("items")):
        slots.append((schema, "items"))
    return slots


def _name_currency_enum(schemas: dict[str, Any]) -> None:
    """The supported currency codes are one component, ``Currency``, whichever schema
    uses them first (the hoisting below reuses a component with the same values)."""
    codes = sorted(CURRENCY_EXPONENTS)
    schemas["Currency"] = {
        "enum": codes,
        "title": "Currency",
        "type": "string",
        "description": "A supported currency: lower-case ISO 4217, as Stripe writes it "
        "(upper case is refused, never normalised). Top-ups, direct payments, wallet debits, "
        "withdrawals, cash-outs and auto-reloads also need limits for the currency "
        "(`PAYMENTS_AMOUNT_LIMITS`); a supported currency without them is 422 "
        "`currency_not_supported` (with `supported_currencies`) on those routes.",
    }


def _name_inline_enums(spec: dict[str, Any]) -> None:
    """Inline string enums become named components, so generated clients get a named
    enum type (``CheckoutSessionPurpose``) instead of a string union per field."""
    schemas = spec["components"]["schemas"]
    by_values: dict[tuple[str, ...], str] = {
        tuple(definition["enum"]): name
        for name, definition in schemas.items()
        if isinstance(definition.get("enum"), list) and definition.get("type") == "string"
    }
    for schema_name in sorted(schemas):
        properties = schemas[schema_name].get("properties", {})
        base = _SCHEMA_NAME_SUFFIXES.sub("", schema_name) or schema_name
        for prop_name in sorted(properties):
            # PayoutRead.status -> PayoutStatus, or PayoutReadStatus if that is taken.
            names = (f"{base}{_pascal(prop_name)}", f"{schema_name}{_pascal(prop_name)}")
            if _inline_enum(properties[prop_name]):
                _hoist_enum(schemas, by_values, properties, prop_name, *names)
            for holder, key in _enum_slots(properties[prop_name]):
                _hoist_enum(schemas, by_values, holder, key, *names)
    for operation in _operations(spec):
        base = _pascal(str(operation.get("operationId", "Operation")))
        for parameter in operation.get("parameters", []):
            name = f"{base}{_pascal(parameter['name'])}"
            if _inline_enum(parameter.get("schema")):
                _hoist_enum(schemas, by_values, parameter, "schema", name)
            for holder, key in _enum_slots(parameter.get("schema", {})):
                _hoist_enum(schemas, by_values, holder, key, name)


def _refs(spec: dict[str, Any], roots: list[Any]) -> set[str]:
    """Names of the component schemas reachable from ``roots``."""
    found: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found:
                    found.add(name)
                    stack.append(spec["components"]["schemas"].get(name))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _require_response_fields(spec: dict[str, Any]) -> None:
    """Success bodies always carry every field (FastAPI serializes the whole response
    model, defaults and nulls included), so every field is required there: clients get
    ``object: string`` and ``failure_code: string | null``, not optional fields.
    Schemas also used in requests keep their defaults optional."""
    operations = _operations(spec)
    requests = _refs(spec, [op.get("requestBody") for op in operations])
    successes = _refs(
        spec,
        [r for op in operations for s, r in op.get("responses", {}).items() if s[0] == "2"],
    )
    for name in sorted(successes - requests):
        schema = spec["components"]["schemas"][name]
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))
        required += [p for p in properties if p not in required]
        if required:
            schema["required"] = required


MINOR_UNITS_NOTE = "Integer amount in the currency's minor unit (e.g. cents for usd)."
_MONEY_NAME = re.compile(r"(^|_)amount($|_)")
_NOT_MONEY_NAME = re.compile(r"(bps|count|quantity|redemptions|attempts|limit|version|status)$")


def _is_integer(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "integer":
        return True
    return any(branch.get("type") == "integer" for branch in schema.get("anyOf", []))


def is_money_field(schema: dict[str, Any], name: str) -> bool:
    """Integer fields named ``amount``/``*_amount*``, and the integers beside a
    ``currency`` (balances, sums) that are not rates or counts."""
    prop = schema.get("properties", {}).get(name, {})
    if not _is_integer(prop):
        return False
    if _MONEY_NAME.search(name):
        return True
    return "currency" in schema.get("properties", {}) and not _NOT_MONEY_NAME.search(name)


def _document_minor_units(schemas: dict[str, Any]) -> None:
    for schema in schemas.values():
        for name, prop in schema.get("properties", {}).items():
            if not is_money_field(schema, name):
                continue
            description = str(prop.get("description") or "")
            if "minor unit" not in description.lower():
                prop["description"] = f"{description} {MINOR_UNITS_NOTE}".strip()


_SAMPLE_BY_NAME: dict[str, Any] = {"currency": "usd", "url": "https://example.com/"}
_SAMPLE_STRINGS = {
    "date-time": "2026-11-23T20:00:00Z",
    "date": "2026-11-23",
    "uri": "https://app.example.com/",
    "email": "alice@example.com",
    "uuid": "5f0c8a7e-2b1d-4c3e-9a8f-7d6e5c4b3a21",
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        resolved: dict[str, Any] = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        schema = {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def example_of(
    spec: dict[str, Any], schema: dict[str, Any], *, request: bool, depth: int = 0
) -> Any:
    """An example value for ``schema``: the schema's own example if it has one, else
    one assembled from its fields. Request examples carry the required fields and the
    optional ones that have examples; response examples carry every field."""
    schema = _resolve(spec, schema)
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "const" in schema:
        return schema["const"]
    if schema.get("default") is not None:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        return example_of(spec, branches[0], request=request, depth=depth) if branches else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 6:
            return {}
        required = set(schema.get("required", []))
        example = {}
        for name, prop in schema.get("properties", {}).items():
            resolved = _resolve(spec, prop)
            if request and name not in required and not resolved.get("examples"):
                continue
            if not resolved.get("examples") and name in _SAMPLE_BY_NAME:
                example[name] = _SAMPLE_BY_NAME[name]
            elif not resolved.get("examples") and is_money_field(schema, name):
                example[name] = 1050
            else:
                example[name] = example_of(spec, prop, request=request, depth=depth + 1)
        return example
    if kind == "array":
        items = schema.get("items")
        return [example_of(spec, items, request=request, depth=depth + 1)] if items else []
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1) or 1)
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "string":
        return _SAMPLE_STRINGS.get(str(schema.get("format")), "string")
    return None


def _add_examples(spec: dict[str, Any]) -> None:
    """Every JSON request body and success response gets an example, unless its schema
    or media type already has one."""
    for operation in _operations(spec):
        contents = [(True, operation.get("requestBody", {}).get("content", {}))]
        contents += [
            (False, response.get("content", {}))
            for status, response in operation.get("responses", {}).items()
            if status.startswith("2")
        ]
        for request, content in contents:
            for media_type, media in content.items():
                if "json" not in media_type or "example" in media or "examples" in media:
                    continue
                schema = media.get("schema")
                if not isinstance(schema, dict) or _resolve(spec, schema).get("examples"):
                    continue
                media["example"] = example_of(spec, schema, request=request)
