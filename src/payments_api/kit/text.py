"""Text PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates.

Both reach Python strings easily (JSON's ``\\u0000`` and ``\\ud800`` escapes, URL
decoding) and both make PostgreSQL refuse the statement, which used to surface as a
500. The request middleware and the webhook parser check with these functions before
any database work.
"""

from __future__ import annotations

from typing import Any


def unstorable(text: str) -> bool:
    """True when ``text`` holds a NUL or a lone surrogate."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def holds_unstorable_text(value: Any) -> bool:
    """``unstorable`` anywhere in a decoded JSON value, keys included."""
    if isinstance(value, str):
        return unstorable(value)
    if isinstance(value, dict):
        return any(holds_unstorable_text(k) or holds_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_unstorable_text(v) for v in value)
    return False
