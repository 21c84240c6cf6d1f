"""CI check of the container files, without a Docker engine (none runs on CI machines).

- Dockerfile: its Python is the one these checks (and the test suite) run on; the
  build installs exactly requirements.lock with hashes; no image bakes production in;
  the runtime user is not root; the health check follows PAYMENTS_PORT; every COPY
  source exists; no floating `latest` tags.
- compose.yaml: parses; every service has an image or a build; `depends_on` names
  services that exist; every `payments-api` command is a real subcommand.
- requirements.lock: still what `uv pip compile` makes of pyproject.toml (same pins
  kept; a new or changed dependency shows up as a difference).
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
LOCK_COMMAND = [
    "pip",
    "compile",
    "pyproject.toml",
    "--python-version",
    "3.11",
    "--python-platform",
    "x86_64-unknown-linux-gnu",
    "--generate-hashes",
    "--quiet",
]


def check_dockerfile(problems: list[str]) -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    images = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    if not images:
        problems.append("Dockerfile: no FROM line")
    for image in images:
        if image.endswith(":latest") or ":" not in image:
            problems.append(f"Dockerfile: {image} has no fixed tag")
        match = re.match(r"python:(\d+\.\d+)", image)
        if match and match.group(1) != tested:
            problems.append(
                f"Dockerfile: image Python {match.group(1)} is not the tested Python {tested}"
            )
    if "--require-hashes -r requirements.lock" not in text:
        problems.append("Dockerfile: dependencies are not installed from requirements.lock")
    if "PAYMENTS_ENVIRONMENT=production" in text:
        problems.append("Dockerfile: bakes PAYMENTS_ENVIRONMENT=production into the image")
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    if not users or users[-1] in {"root", "0"}:
        problems.append("Dockerfile: the runtime stage runs as root")
    healthcheck = text[text.find("HEALTHCHECK") :]
    if "HEALTHCHECK" not in text or "PAYMENTS_PORT" not in healthcheck.split("CMD", 1)[-1]:
        problems.append("Dockerfile: the health check does not follow PAYMENTS_PORT")
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _target = line.split()
        for source in sources:
            if not (REPO / source).exists():
                problems.append(f"Dockerfile: COPY source {source} does not exist")


def check_compose(problems: list[str]) -> None:
    from payments_api.cli import app

    commands = {
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    }
    compose: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    services: dict[str, Any] = compose.get("services") or {}
    for required in ("api", "worker", "postgres"):
        if required not in services:
            problems.append(f"compose.yaml: no {required} service")
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"compose.yaml: {name} has neither image nor build")
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"compose.yaml: {name} depends on unknown {dependency}")
        command = service.get("command") or []
        if command[:1] == ["payments-api"] and (len(command) < 2 or command[1] not in commands):
            problems.append(f"compose.yaml: {name} runs an unknown command {command}")
        for port in service.get("ports") or []:
            if not re.fullmatch(r"\d+:\d+", str(port)):
                problems.append(f"compose.yaml: {name} port {port!r} is not HOST:CONTAINER")


def check_lock(problems: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "requirements.lock"
        fresh.write_text((REPO / "requirements.lock").read_text())  # keep today's pins
        subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "-m", "uv", *LOCK_COMMAND, "-o", str(fresh)],
            cwd=REPO,
            check=True,
        )
        committed = (REPO / "requirements.lock").read_text().splitlines()
        made = fresh.read_text().splitlines()
        # The header names the output file, which differs here.
        diff = [
            line
            for line in difflib.unified_diff(committed, made, lineterm="", n=0)
            if line.startswith(("+", "-"))
            and not line.startswith(("+++", "---"))
            and "uv pip compile" not in line
        ]
        if diff:
            problems.append(
                "requirements.lock is stale: run `.venv/bin/uv "
                + " ".join(LOCK_COMMAND)
                + " -o requirements.lock`\n"
                + "\n".join(diff[:20])
            )


def main() -> int:
    problems: list[str] = []
    check_dockerfile(problems)
    check_compose(problems)
    check_lock(problems)
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201
    if not problems:
        print("check_container: Dockerfile, compose.yaml and requirements.lock check out")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
