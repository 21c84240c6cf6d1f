"""CI check of the container files, without a Docker engine (none runs on CI machines).

Nothing here builds or starts a container; the rules below are read off the files.

Dockerfile (the hadolint rule a check mirrors is named in its message):
- every ``FROM`` has a fixed tag, not ``latest`` (DL3006, DL3007), and a Python image is
  the Python these checks and the test suite run on;
- dependencies are installed from ``requirements.lock`` with ``--require-hashes``, pip
  keeps no cache (DL3042);
- no image bakes ``PAYMENTS_ENVIRONMENT=production`` (``migrate`` and the sandbox must
  run from it);
- the last ``USER`` is not root (DL3002); ``WORKDIR`` is absolute (DL3000); ``COPY``,
  not ``ADD`` (DL3020); ``CMD``/``ENTRYPOINT`` in JSON form (DL3025); no ``MAINTAINER``
  (DL4000), no ``sudo`` (DL3004);
- ``COPY --from`` names an earlier stage; every ``COPY`` source exists;
- the health check follows ``PAYMENTS_PORT``, and ``EXPOSE`` is that port's default.

compose.yaml (the structure of the Compose specification, then this project's rules):
- only known top-level keys and service keys; each service has an image or a build;
  ``depends_on`` names services with known conditions, and ``service_healthy`` only
  services that have a health check; named volumes are declared;
- api, worker and PostgreSQL are there; every ``payments-api`` command exists;
- a published port reaches the port the service listens on, and
  ``PAYMENTS_PUBLIC_BASE_URL`` names the published one;
- in sandbox mode (no Stripe key) a worker reaches the sandbox in the service that
  serves it (``PAYMENTS_STRIPE_API_BASE``): its own 127.0.0.1 has nothing listening;
  and a worker turns off the image's HTTP health check (it serves no HTTP).

requirements.lock: still what ``uv pip compile`` makes of pyproject.toml (today's pins
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
from urllib.parse import urlsplit

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

COMPOSE_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
# The service attributes of the Compose specification (compose-spec, services section).
COMPOSE_SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop",
    "cgroup", "cgroup_parent", "command", "configs", "container_name", "cpu_count",
    "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime",
    "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on", "deploy",
    "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search",
    "domainname", "entrypoint", "env_file", "environment", "expose", "extends",
    "external_links", "extra_hosts", "gpus", "group_add", "healthcheck", "hostname",
    "image", "init", "ipc", "isolation", "labels", "links", "logging", "mac_address",
    "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "network_mode",
    "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform",
    "ports", "post_start", "pre_stop", "privileged", "profiles", "pull_policy",
    "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
    "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs",
    "tty", "ulimits", "user", "userns_mode", "uts", "volumes", "volumes_from",
    "working_dir",
}  # fmt: skip
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART_POLICIES = {"no", "always", "on-failure", "unless-stopped"}


def python_under_test() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuations joined."""
    joined: list[str] = []
    current = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current.strip())
    result = []
    for line in joined:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _env_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest):
                env[key] = value
    return env


def check_dockerfile(dockerfile: str, repo: Path = REPO) -> list[str]:
    problems: list[str] = []
    instructions = _instructions(dockerfile)
    stages: set[str] = set()
    froms = [rest for word, rest in instructions if word == "FROM"]
    if not froms:
        problems.append("Dockerfile: no FROM line")
    for word, rest in instructions:
        if word == "FROM":
            image, *alias = rest.split()
            if ":" not in image and "@" not in image and image not in stages:
                problems.append(f"Dockerfile: {image} has no fixed tag (DL3006)")
            if image.endswith(":latest"):
                problems.append(f"Dockerfile: {image} uses the latest tag (DL3007)")
            match = re.match(r"python:(\d+\.\d+)", image)
            if match and match.group(1) != python_under_test():
                problems.append(
                    f"Dockerfile: image Python {match.group(1)} is not the tested "
                    f"Python {python_under_test()}"
                )
            if len(alias) == 2 and alias[0].upper() == "AS":
                stages.add(alias[1])
        elif word == "ADD":
            problems.append(f"Dockerfile: ADD {rest}: use COPY for files (DL3020)")
        elif word in {"CMD", "ENTRYPOINT"} and not rest.startswith("["):
            problems.append(f"Dockerfile: {word} {rest}: use the JSON form (DL3025)")
        elif word == "WORKDIR" and not rest.startswith(("/", "$")):
            problems.append(f"Dockerfile: WORKDIR {rest} is not absolute (DL3000)")
        elif word == "MAINTAINER":
            problems.append("Dockerfile: MAINTAINER is deprecated, use a LABEL (DL4000)")
        elif word == "RUN":
            if re.search(r"(^|[;&|\s])sudo\s", rest):
                problems.append("Dockerfile: RUN uses sudo (DL3004)")
            if re.search(r"\bpip\s+install\b", rest) and "--no-cache-dir" not in rest:
                problems.append(f"Dockerfile: RUN {rest}: pip keeps its cache (DL3042)")
        elif word == "COPY":
            parts = rest.split()
            source_stage = next(
                (p.split("=", 1)[1] for p in parts if p.startswith("--from=")), None
            )
            if source_stage is not None:
                if source_stage not in stages:
                    problems.append(f"Dockerfile: COPY --from={source_stage}: no such stage")
                continue
            *sources, _target = [p for p in parts if not p.startswith("--")]
            for source in sources:
                if not (repo / source).exists():
                    problems.append(f"Dockerfile: COPY source {source} does not exist")
    text = "\n".join(f"{word} {rest}" for word, rest in instructions)
    if "--require-hashes -r requirements.lock" not in text:
        problems.append("Dockerfile: dependencies are not installed from requirements.lock")
    if "PAYMENTS_ENVIRONMENT=production" in text:
        problems.append("Dockerfile: bakes PAYMENTS_ENVIRONMENT=production into the image")
    users = [rest for word, rest in instructions if word == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append("Dockerfile: the runtime stage runs as root (DL3002)")
    checks = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    if not checks or "PAYMENTS_PORT" not in checks[-1].split("CMD", 1)[-1]:
        problems.append("Dockerfile: the health check does not follow PAYMENTS_PORT")
    port = _env_defaults(instructions).get("PAYMENTS_PORT")
    exposed = [rest for word, rest in instructions if word == "EXPOSE"]
    if port is None:
        problems.append("Dockerfile: no default PAYMENTS_PORT")
    elif exposed and port not in " ".join(exposed).replace("/tcp", "").split():
        problems.append(f"Dockerfile: EXPOSE {' '.join(exposed)} is not PAYMENTS_PORT {port}")
    return problems


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _payments_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    if isinstance(command, str):
        command = command.split()
    return [str(part) for part in command]


def _listen_port(service: dict[str, Any], image_env: dict[str, str]) -> str:
    command = _payments_command(service)
    if "--port" in command[:-1]:
        return command[command.index("--port") + 1]
    return _environment(service).get("PAYMENTS_PORT") or image_env.get("PAYMENTS_PORT", "8000")


def check_compose(compose: Any, dockerfile: str) -> list[str]:
    problems: list[str] = []
    if not isinstance(compose, dict):
        return ["compose.yaml: not a mapping"]
    for key in compose:
        if key not in COMPOSE_TOP_LEVEL and not str(key).startswith("x-"):
            problems.append(f"compose.yaml: unknown top-level key {key!r}")
    services: dict[str, Any] = compose.get("services") or {}
    declared_volumes = set(compose.get("volumes") or {})
    instructions = _instructions(dockerfile)
    image_env = _env_defaults(instructions)
    image_has_healthcheck = any(word == "HEALTHCHECK" for word, _ in instructions)

    from payments_api.cli import app

    commands = {
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    }
    for required in ("api", "worker", "postgres"):
        if required not in services:
            problems.append(f"compose.yaml: no {required} service")

    def has_healthcheck(name: str) -> bool:
        service = services.get(name) or {}
        check = service.get("healthcheck")
        if isinstance(check, dict):
            return not check.get("disable", False)
        return "build" in service and image_has_healthcheck

    servers: dict[str, str] = {}  # service name -> the port `payments-api serve` listens on
    for name, service in services.items():
        command = _payments_command(service)
        if command[:2] == ["payments-api", "serve"]:
            servers[name] = _listen_port(service, image_env)

    for name, service in services.items():
        if not isinstance(service, dict):
            problems.append(f"compose.yaml: {name} is not a mapping")
            continue
        for key in service:
            if key not in COMPOSE_SERVICE_KEYS and not str(key).startswith("x-"):
                problems.append(f"compose.yaml: {name} has an unknown key {key!r}")
        if "image" not in service and "build" not in service:
            problems.append(f"compose.yaml: {name} has neither image nor build")
        restart = service.get("restart")
        if restart is not None and str(restart).split(":")[0] not in RESTART_POLICIES:
            problems.append(f"compose.yaml: {name} has an unknown restart policy {restart!r}")
        depends = service.get("depends_on") or {}
        for dependency in depends:
            if dependency not in services:
                problems.append(f"compose.yaml: {name} depends on unknown {dependency}")
                continue
            condition = depends[dependency].get("condition") if isinstance(depends, dict) else None
            if condition is not None and condition not in DEPENDS_ON_CONDITIONS:
                problems.append(f"compose.yaml: {name} waits for an unknown {condition!r}")
            if condition == "service_healthy" and not has_healthcheck(dependency):
                problems.append(
                    f"compose.yaml: {name} waits for {dependency} to be healthy, "
                    "which has no health check"
                )
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            named = source and not source.startswith((".", "/", "~", "$"))
            if named and source not in declared_volumes:
                problems.append(f"compose.yaml: {name} uses undeclared volume {source}")
        command = _payments_command(service)
        if command[:1] == ["payments-api"] and (len(command) < 2 or command[1] not in commands):
            problems.append(f"compose.yaml: {name} runs an unknown command {command}")
        env = _environment(service)
        published: list[str] = []
        for port in service.get("ports") or []:
            match = re.fullmatch(r"(?:[\d.]+:)?(\d+):(\d+)", str(port))
            if not match:
                problems.append(f"compose.yaml: {name} port {port!r} is not HOST:CONTAINER")
                continue
            published.append(match.group(1))
            if name in servers and match.group(2) != servers[name]:
                problems.append(
                    f"compose.yaml: {name} publishes container port {match.group(2)}, "
                    f"but the service listens on {servers[name]}"
                )
        public = env.get("PAYMENTS_PUBLIC_BASE_URL")
        if name in servers and public and published:
            public_port = str(urlsplit(public).port or "")
            if public_port not in published:
                problems.append(
                    f"compose.yaml: {name}'s PAYMENTS_PUBLIC_BASE_URL {public} is not its "
                    f"published port {', '.join(published)}"
                )
        if command[:2] == ["payments-api", "worker"]:
            if has_healthcheck(name):
                problems.append(
                    f"compose.yaml: {name} runs a worker (no HTTP) with the image's HTTP "
                    "health check: set `healthcheck: {disable: true}`"
                )
            if not env.get("PAYMENTS_STRIPE_SECRET_KEY"):
                expected = {f"http://{s}:{p}/sandbox/stripe" for s, p in servers.items()}
                if env.get("PAYMENTS_STRIPE_API_BASE") not in expected:
                    problems.append(
                        f"compose.yaml: {name} runs the sandbox but cannot reach it: set "
                        f"PAYMENTS_STRIPE_API_BASE to one of {sorted(expected)}"
                    )
    return problems


def check_lock(repo: Path = REPO) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "requirements.lock"
        fresh.write_text((repo / "requirements.lock").read_text())  # keep today's pins
        subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "-m", "uv", *LOCK_COMMAND, "-o", str(fresh)],
            cwd=repo,
            check=True,
        )
        committed = (repo / "requirements.lock").read_text().splitlines()
        made = fresh.read_text().splitlines()
        # The header names the output file, which differs here.
        diff = [
            line
            for line in difflib.unified_diff(committed, made, lineterm="", n=0)
            if line.startswith(("+", "-"))
            and not line.startswith(("+++", "---"))
            and "uv pip compile" not in line
        ]
    if not diff:
        return []
    return [
        "requirements.lock is stale: run `.venv/bin/uv "
        + " ".join(LOCK_COMMAND)
        + " -o requirements.lock`\n"
        + "\n".join(diff[:20])
    ]


def main() -> int:
    dockerfile = (REPO / "Dockerfile").read_text()
    problems = check_dockerfile(dockerfile)
    problems += check_compose(yaml.safe_load((REPO / "compose.yaml").read_text()), dockerfile)
    problems += check_lock()
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201
    if not problems:
        print("check_container: Dockerfile, compose.yaml and requirements.lock check out")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
