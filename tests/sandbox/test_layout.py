"""The sandbox package stays out of the product and readable (issue 17): loaded only
without a Stripe key, no file over 600 lines, no class over 400, and its pages are
templates rendered with autoescape, not HTML in Python strings."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
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


PROBE = """
import sys
from pydantic import SecretStr
from payments_api.main import create_app
from payments_api.settings import Environment, Settings
base = dict(_env_file=None, environment=Environment.test, jwt_secret=SecretStr("x" * 40))
create_app(Settings(**base, stripe_secret_key=SecretStr("sk_test_123")))
print("payments_sandbox" in sys.modules)
create_app(Settings(**base, stripe_secret_key=None))
print("payments_sandbox" in sys.modules)
"""


def test_the_sandbox_is_loaded_only_without_a_stripe_key() -> None:
    # A fresh interpreter: this test process has imported the sandbox already.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENTS_")}
    probe = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )

    assert probe.stdout.split() == ["False", "True"]
