"""Component schemas generators name types after: inline request/response objects and
string enums become named components, success bodies require every field, integer
money fields say they are in minor units."""

from __future__ import annotations

import re
from typing import Any

from payments_api.money import CURRENCY_EXPONENTS
from payments_api.openapi.walk import operations


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


def name_inline_schemas(spec: dict[str, Any]) -> None:
    """Inline object schemas of request bodies and success responses become named
    components (``<OperationId>Request`` / ``<OperationId>Response``)."""
    schemas = spec["components"]["schemas"]
    for operation in operations(spec):
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


def name_currency_enum(schemas: dict[str, Any]) -> None:
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


def name_inline_enums(spec: dict[str, Any]) -> None:
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
    for operation in operations(spec):
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


def require_response_fields(spec: dict[str, Any]) -> None:
    """Success bodies always carry every field (FastAPI serializes the whole response
    model, defaults and nulls included), so every field is required there: clients get
    ``object: string`` and ``failure_code: string | null``, not optional fields.
    Schemas also used in requests keep their defaults optional."""
    every_operation = operations(spec)
    requests = _refs(spec, [op.get("requestBody") for op in every_operation])
    successes = _refs(
        spec,
        [r for op in every_operation for s, r in op.get("responses", {}).items() if s[0] == "2"],
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


def document_minor_units(schemas: dict[str, Any]) -> None:
    for schema in schemas.values():
        for name, prop in schema.get("properties", {}).items():
            if not is_money_field(schema, name):
                continue
            description = str(prop.get("description") or "")
            if "minor unit" not in description.lower():
                prop["description"] = f"{description} {MINOR_UNITS_NOTE}".strip()
