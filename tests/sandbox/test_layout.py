"""The sandbox package stays readable (issue 17): no file over 600 lines, no class over
400, and its pages are templates rendered with autoescape, not HTML in Python strings."""

from __future__ import annotations

import ast
from pathlib import Path

import payments_sandbox
from payments_sandbox import html

PACKAGE = Path(payments_sandbox.__file__).resolve().parent
MAX_FILE_LINES = 600
MAX_CLASS_LINES = 400


def _modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 20  # the package is really there, split by resource
    return found


def test_no_file_over_600_lines() -> None:
    too_long = {
        path.name: lines
        for path in _modules()
        if (lines := path.read_text().count("\n")) > MAX_FILE_LINES
    }

    assert too_long == {}


def test_no_class_over_400_lines() -> None:
    too_long = {
        f"{path.name}:{node.name}": lines
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and (lines := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES
    }

    assert too_long == {}


def test_pages_are_templates_with_autoescape() -> None:
    templates = {path.name for path in (PACKAGE / "templates").glob("*.html")}

    assert html._environment.autoescape is True
    assert {"base.html", "checkout.html", "admin.html", "authenticate.html"} <= templates
    assert not any("<form" in path.read_text() for path in _modules())
