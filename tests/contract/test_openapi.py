"""OpenAPI quality for generated clients (TypeScript, Swift, Kotlin).

Every rule runs over every operation the app has, so a route added later is held to
the same rules without touching this file. Most rules are kept generically by
``payments_api.openapi``; these tests prove the document that comes out obeys them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from payments_api.openapi.components import MINOR_UNITS_NOTE
from tests.contract.spec import (
    COMMITTED_SPEC,
    PROBLEM_JSON,
    Operation,
    app_spec,
    operations,
    resolve,
)

CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")
COMPONENT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# Routes a browser (not an app) calls: Stripe's onboarding landings and the sandbox's
# pages answer HTML; Prometheus scrapes text.
NON_JSON_PATHS = re.compile(r"^(/api/v1/payout-account/onboarding/|/sandbox/|/metrics$)")
# Authenticated by their own means (Stripe signatures, signed state in the URL) or public.
UNAUTHENTICATED = re.compile(
    r"^(/healthz|/readyz|/metrics|/api/v1/webhooks/|/api/v1/payout-account/onboarding/|/sandbox/)"
)

SPEC = app_spec()
OPERATIONS = list(operations(SPEC))


def op_ids(ops: list[Operation]) -> list[str]:
    return [op.id for op in ops]


def validator_for(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator for OpenAPI 3.1 schema objects; ``#/components/...`` references
    resolve against the root of the validated document, so the components ride along."""
    return OAS31Validator({**schema, "components": spec["components"]})


def media_of(op: Operation) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, media type, media object) for the request body and success responses."""
    found = [
        ("request", media_type, media)
        for media_type, media in op.spec.get("requestBody", {}).get("content", {}).items()
    ]
    for status, response in op.spec["responses"].items():
        if status.startswith("2"):
            found += [(status, t, m) for t, m in response.get("content", {}).items()]
    return found


def inline_enums(node: Any, where: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list) and len(enum) > 1:
            found.append(where)
        for key, value in node.items():
            found += inline_enums(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += inline_enums(value, f"{where}/{index}")
    return found


class TestDocument:
    def test_the_app_spec_is_valid_openapi(self) -> None:
        validate(SPEC)  # raises with the offending path

    def test_the_committed_spec_is_valid_openapi(self) -> None:
        validate(json.loads(COMMITTED_SPEC.read_text()))

    def test_the_app_has_routes(self) -> None:
        # Guards every rule below against passing vacuously.
        assert len(OPERATIONS) >= 30
        assert {"/api/v1/topups", "/api/v1/me/balance", "/api/v1/escrows"} <= set(SPEC["paths"])

    def test_every_used_tag_is_declared_with_a_description(self) -> None:
        declared = {tag["name"]: tag.get("description") for tag in SPEC["tags"]}
        used = {tag for op in OPERATIONS for tag in op.spec.get("tags", [])}
        assert used - set(declared) == set(), (
            "declare new tags in payments_api.openapi.document.TAGS"
        )
        assert [name for name, text in declared.items() if not text] == []


class TestOperations:
    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_operation_id_summary_and_tags(self, op: Operation) -> None:
        assert CAMEL_CASE.match(op.spec.get("operationId", "")), op.spec.get("operationId")
        assert op.spec.get("summary", "").strip()
        assert op.spec.get("tags")

    def test_operation_ids_are_unique(self) -> None:
        ids = [op.spec["operationId"] for op in OPERATIONS]
        assert sorted(i for i in ids if ids.count(i) > 1) == []

    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_success_and_error_responses_are_declared(self, op: Operation) -> None:
        statuses = set(op.spec["responses"])
        assert {s for s in statuses if s[0] in "23"}, "no success response declared"
        assert "500" in statuses
        if op.secured:
            assert "401" in statuses

    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_errors_are_the_shared_problem_schema(self, op: Operation) -> None:
        for status, response in op.spec["responses"].items():
            if status in ("4XX", "5XX"):  # error pages of browser routes
                assert NON_JSON_PATHS.match(op.path), status
                assert set(response["content"]) == {"text/html"}
            elif int(status) >= 400:
                assert response["content"] == {PROBLEM_JSON: {"schema": PROBLEM_REF}}, status
                assert response.get("description")

    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_authentication_is_declared(self, op: Operation) -> None:
        if UNAUTHENTICATED.match(op.path):
            assert not op.secured
        else:
            assert op.spec.get("security") == [{"HTTPBearer": []}]

    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_bodies_use_named_schemas(self, op: Operation) -> None:
        for where, media_type, media in media_of(op):
            if NON_JSON_PATHS.match(op.path) and "json" not in media_type:
                continue
            assert "json" in media_type, (where, media_type)
            schema = media["schema"]
            if "anyOf" in schema:  # an optional body: `Model | None`
                branches = [b for b in schema["anyOf"] if b != {"type": "null"}]
                assert len(branches) == 1, (where, schema)
                schema = branches[0]
            if schema.get("type") == "array":
                schema = schema["items"]
            assert set(schema) == {"$ref"}, (where, schema)

    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_json_bodies_have_examples_that_match_their_schema(self, op: Operation) -> None:
        for where, media_type, media in media_of(op):
            if "json" not in media_type:
                continue
            schema = media["schema"]
            examples = resolve(SPEC, schema).get("examples", [])
            if "example" in media:
                examples = [media["example"], *examples]
            examples += [e["value"] for e in media.get("examples", {}).values()]
            assert examples, f"{where}: no example"
            validator = validator_for(SPEC, schema)
            for example in examples:
                errors = [e.message for e in validator.iter_errors(example)]
                assert errors == [], f"{where}: example {example} is invalid: {errors}"

    @pytest.mark.parametrize("op", OPERATIONS, ids=op_ids(OPERATIONS))
    def test_parameters_are_described(self, op: Operation) -> None:
        for parameter in op.spec.get("parameters", []):
            if parameter["in"] in ("query", "header"):
                assert parameter.get("description"), parameter["name"]


class TestComponents:
    def test_names_are_clean_type_names(self) -> None:
        names = list(SPEC["components"]["schemas"])
        assert [n for n in names if not COMPONENT_NAME.match(n) or n.startswith("Body")] == []
        # pydantic's split models (`Foo-Input`/`Foo-Output`) would fail the pattern too.

    def test_no_anonymous_inline_objects(self) -> None:
        inline: list[str] = []
        for name, schema in SPEC["components"]["schemas"].items():
            for prop, definition in schema.get("properties", {}).items():
                branches = [definition, *definition.get("anyOf", []), definition.get("items", {})]
                if any("properties" in b for b in branches if isinstance(b, dict)):
                    inline.append(f"{name}.{prop}")
        assert inline == []

    def test_enums_are_named_schemas(self) -> None:
        outside = inline_enums(SPEC["paths"], "paths")
        for name, schema in SPEC["components"]["schemas"].items():
            outside += [
                where
                for where in inline_enums(schema, name)
                if where != name  # the named enum itself
            ]
        assert outside == []

    def test_known_enums_are_named(self) -> None:
        schemas = SPEC["components"]["schemas"]
        purpose = SPEC["components"]["schemas"]["CheckoutSessionCreate"]["properties"]["purpose"]
        assert schemas[purpose["$ref"].rsplit("/", 1)[1]]["enum"] == [
            "topup",
            "order",
            "escrow",
            "direct",
        ]
        assert schemas["PayoutAccountStatus"]["enum"] == [
            "not_started",
            "pending",
            "enabled",
            "restricted",
        ]

    def test_money_fields_say_minor_units(self) -> None:
        undocumented: list[str] = []
        money_fields = 0
        for name, schema in SPEC["components"]["schemas"].items():
            properties = schema.get("properties", {})
            for prop, definition in properties.items():
                kinds = {definition.get("type")} | {
                    b.get("type") for b in definition.get("anyOf", [])
                }
                named_money = re.search(r"(^|_)amount($|_)", prop) is not None
                beside_currency = "currency" in properties and not re.search(
                    r"(bps|count|quantity|redemptions|attempts|limit|status)$", prop
                )
                if "integer" in kinds and (named_money or beside_currency):
                    money_fields += 1
                    if "minor unit" not in str(definition.get("description", "")).lower():
                        undocumented.append(f"{name}.{prop}")
        assert undocumented == []
        assert money_fields >= 20

    def test_balances_are_documented_in_minor_units(self) -> None:
        balance = SPEC["components"]["schemas"]["CurrencyBalance"]["properties"]
        for field in ("available", "escrow", "withdrawing", "pending"):
            assert MINOR_UNITS_NOTE in balance[field]["description"]

    def test_problem_schema_is_rfc9457_with_a_code(self) -> None:
        problem = SPEC["components"]["schemas"]["Problem"]
        assert {"type", "title", "status", "code"} <= set(problem["required"])
        validator = validator_for(SPEC, PROBLEM_REF)
        for example in problem["examples"]:
            assert list(validator.iter_errors(example)) == []

    def test_every_property_example_matches_its_schema(self) -> None:
        invalid: list[str] = []
        for name, schema in SPEC["components"]["schemas"].items():
            for prop, definition in schema.get("properties", {}).items():
                validator = validator_for(SPEC, dict(definition))
                invalid += [
                    f"{name}.{prop}: {example!r}"
                    for example in definition.get("examples", [])
                    if list(validator.iter_errors(example))
                ]
        assert invalid == []
