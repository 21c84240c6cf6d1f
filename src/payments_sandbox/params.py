"""Stripe's form encoding, decoded: ``metadata[order_id]=7``, ``expand[0]=x``,
``line_items[0][price_data][unit_amount]=1000`` become nested dicts and lists.

stripe-python sends lists with explicit indexes (``expand[0]``), browsers and curl users
often write ``expand[]``; both are accepted. Values stay strings, as on the wire; the
typed accessors of :class:`Params` convert them with Stripe's own error messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from payments_api.money import CURRENCY_EXPONENTS
from payments_sandbox.errors import StripeApiError, invalid, missing_param

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
# Maps whose keys are user data: never turned into lists even if the keys are digits.
_FREE_KEYS = frozenset({"metadata"})


def _split(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        return [key]
    return [match.group(1), *_PART.findall(match.group(2))]


def _listify(value: Any, name: str = "") -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v, k) for k, v in value.items()}
    if (
        name not in _FREE_KEYS
        and converted
        and all((k.isascii() and k.isdigit()) for k in converted)
    ):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nested parameters from form pairs (the request body or the query string)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _split(key)
        node = root
        for index, part in enumerate(parts):
            name = part if part != "" else str(len(node))
            if index == len(parts) - 1:
                node[name] = value
                break
            child = node.get(name)
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
    result = _listify(root)
    assert isinstance(result, dict)  # noqa: S101 - the root always has string keys
    return result


class Params:
    """Typed, validated access to one request's parameters."""

    def __init__(
        self, data: dict[str, Any], *, allowed: Iterable[str] | None = None, prefix: str = ""
    ) -> None:
        self.data = data
        self.prefix = prefix
        if allowed is not None:
            known = {*allowed, "expand"}
            for name in data:
                if name not in known:
                    raise StripeApiError(
                        400,
                        f"Received unknown parameter: {name}",
                        code="parameter_unknown",
                        param=self._display(name),
                        stored=False,
                    )

    def raw(self, path: str) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if (
                isinstance(node, list)
                and (part.isascii() and part.isdigit())
                and int(part) < len(node)
            ):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return None
        return node

    def has(self, path: str) -> bool:
        return self.raw(path) is not None

    def text(self, path: str, *, required: bool = False) -> str | None:
        value = self.raw(path)
        if value is None or value == "":
            if required:
                raise missing_param(self._display(path))
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {value!r}", param=self._display(path))
        return value

    def required_text(self, path: str) -> str:
        value = self.text(path, required=True)
        assert value is not None  # noqa: S101 - required
        return value

    def integer(
        self, path: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self.raw(path)
        if value is None or value == "":
            if required:
                raise missing_param(self._display(path))
            return None
        if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,18}", value):
            raise invalid(f"Invalid integer: {value}", param=self._display(path))
        number = int(value)
        if minimum is not None and number < minimum:
            raise invalid(
                f"This value must be greater than or equal to {minimum}.",
                param=self._display(path),
            )
        return number

    def required_integer(self, path: str, *, minimum: int | None = None) -> int:
        value = self.integer(path, required=True, minimum=minimum)
        assert value is not None  # noqa: S101 - required
        return value

    def boolean(self, path: str, default: bool = False) -> bool:
        value = self.raw(path)
        if value is None or value == "":
            return default
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=self._display(path))
        return bool(value == "true")

    def currency(self, path: str = "currency", *, required: bool = True) -> str | None:
        value = self.text(path, required=required)
        if value is None:
            return None
        code = value.lower()
        if code not in CURRENCY_EXPONENTS:
            raise invalid(f"Invalid currency: {value}.", param=self._display(path))
        return code

    def metadata(self, path: str = "metadata") -> dict[str, str]:
        """Stripe's limits: 50 keys, keys up to 40 characters, values up to 500."""
        value = self.raw(path)
        if value is None or value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid("Invalid hash", param=self._display(path))
        if len(value) > 50:
            raise invalid("Metadata may have at most 50 keys.", param=self._display(path))
        result: dict[str, str] = {}
        for key, item in value.items():
            if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
                raise invalid(
                    "Metadata keys are at most 40 characters and values 500.",
                    param=f"{self._display(path)}[{key}]",
                )
            if item != "":  # an empty value unsets a key
                result[key] = item
        return result

    def expand(self) -> list[str]:
        value = self.raw("expand")
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid("Invalid array", param="expand")
        return [str(v) for v in value]

    def child(self, path: str) -> Params:
        """The parameters under ``path`` (e.g. one line item), named in full in errors."""
        value = self.raw(path)
        if not isinstance(value, dict):
            raise invalid("Invalid hash", param=self._display(path))
        return Params(value, prefix=self._display(path))

    def _display(self, path: str) -> str:
        """Stripe's name of a parameter: ``line_items[0][price_data][currency]``."""
        parts = path.split(".")
        if self.prefix:
            return self.prefix + "".join(f"[{part}]" for part in parts)
        head, *rest = parts
        return head + "".join(f"[{part}]" for part in rest)
