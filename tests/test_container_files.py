"""scripts/check_container.py, the static check of the Dockerfile and compose.yaml that
CI runs in place of a Docker engine: the committed files pass, and each rule catches
the mistake it is there for."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from scripts.check_container import check_compose, check_dockerfile, python_under_test

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())


def _compose(change: Any) -> dict[str, Any]:
    compose = copy.deepcopy(COMPOSE)
    change(compose)
    return compose


def test_the_committed_files_pass() -> None:
    assert check_dockerfile(DOCKERFILE) == []
    assert check_compose(COMPOSE, DOCKERFILE) == []


def test_the_image_runs_the_python_the_tests_run_on() -> None:
    assert f"FROM python:{python_under_test()}-" in DOCKERFILE


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("python:3.11-slim AS runtime", "python:3.12-slim AS runtime", "is not the tested Python"),
        ("python:3.11-slim AS build", "python:latest AS build", "DL3007"),
        ("python:3.11-slim AS build", "python AS build", "DL3006"),
        (
            "PYTHONUNBUFFERED=1 \\",
            "PYTHONUNBUFFERED=1 PAYMENTS_ENVIRONMENT=production \\",
            "bakes PAYMENTS_ENVIRONMENT=production",
        ),
        ("--require-hashes -r requirements.lock", "-r requirements.lock", "requirements.lock"),
        ("USER app", "USER root", "DL3002"),
        ("WORKDIR /app\nRUN python", "WORKDIR app\nRUN python", "DL3000"),
        ("COPY src ./src", "ADD src ./src", "DL3020"),
        ('CMD ["payments-api", "serve"]', "CMD payments-api serve", "DL3025"),
        ("pip install --no-cache-dir --no-deps", "pip install --no-deps", "DL3042"),
        ("COPY --from=build", "COPY --from=builder", "no such stage"),
        ("COPY alembic ./alembic", "COPY alembik ./alembic", "alembik does not exist"),
        ("os.environ.get('PAYMENTS_PORT', '8000')", "8000", "health check"),
        ("EXPOSE 8000", "EXPOSE 9000", "is not PAYMENTS_PORT 8000"),
    ],
)
def test_a_dockerfile_mistake_is_caught(old: str, new: str, expected: str) -> None:
    assert old in DOCKERFILE
    problems = check_dockerfile(DOCKERFILE.replace(old, new, 1))
    assert len(problems) == 1, problems
    assert expected in problems[0]


def _drop_sandbox_route(c: dict[str, Any]) -> None:
    del c["services"]["worker"]["environment"]["PAYMENTS_STRIPE_API_BASE"]


def _worker_health(c: dict[str, Any]) -> None:
    del c["services"]["worker"]["healthcheck"]


def _public_port(c: dict[str, Any]) -> None:
    c["services"]["api"]["environment"]["PAYMENTS_PUBLIC_BASE_URL"] = "http://127.0.0.1:9000"


def _container_port(c: dict[str, Any]) -> None:
    c["services"]["api"]["ports"] = ["8000:9000"]


def _unknown_dependency(c: dict[str, Any]) -> None:
    c["services"]["worker"]["depends_on"]["db"] = {"condition": "service_started"}


def _healthy_without_check(c: dict[str, Any]) -> None:
    del c["services"]["postgres"]["healthcheck"]


def _unknown_key(c: dict[str, Any]) -> None:
    c["services"]["api"]["command_line"] = ["payments-api", "serve"]


def _unknown_command(c: dict[str, Any]) -> None:
    c["services"]["worker"]["command"] = ["payments-api", "work"]


def _undeclared_volume(c: dict[str, Any]) -> None:
    del c["volumes"]


def _no_worker(c: dict[str, Any]) -> None:
    del c["services"]["worker"]


def _top_level(c: dict[str, Any]) -> None:
    c["service"] = {}


@pytest.mark.parametrize(
    ("change", "expected", "count"),
    [
        (_drop_sandbox_route, "runs the sandbox but cannot reach it", 1),
        (_worker_health, "HTTP health check", 1),
        (_public_port, "is not its published port 8000", 1),
        (_container_port, "but the service listens on 8000", 1),
        (_unknown_dependency, "depends on unknown db", 1),
        # api and worker both wait for it
        (_healthy_without_check, "waits for postgres to be healthy, which has no health", 2),
        (_unknown_key, "unknown key 'command_line'", 1),
        (_unknown_command, "unknown command", 1),
        (_undeclared_volume, "undeclared volume postgres-data", 1),
        (_no_worker, "no worker service", 1),
        (_top_level, "unknown top-level key 'service'", 1),
    ],
)
def test_a_compose_mistake_is_caught(change: Any, expected: str, count: int) -> None:
    problems = check_compose(_compose(change), DOCKERFILE)
    assert len(problems) == count, problems
    assert all(expected in problem for problem in problems), problems


def test_a_worker_with_a_stripe_key_needs_no_sandbox_route() -> None:
    def live(c: dict[str, Any]) -> None:
        _drop_sandbox_route(c)
        c["services"]["worker"]["environment"]["PAYMENTS_STRIPE_SECRET_KEY"] = "${KEY}"

    assert check_compose(_compose(live), DOCKERFILE) == []
