"""`payments-api serve` as a newcomer runs it: no configuration, a port of their choosing.

A real process with the embedded PostgreSQL (pgserver) in a new data folder and the
sandbox standing in for Stripe, on a random free port (not 8000): the demo must pass
against it, and once the service exits on SIGTERM the PostgreSQL it started must be
gone too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from payments_api.db import _forget_dead_handles

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENTS_")}
    env["PAYMENTS_DATA_DIR"] = str(data_dir)
    return env


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        pytest.fail(f"serve exited ({process.returncode}):\n{log.read_text()[-4000:]}")
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


class TestServeOnAnyPort:
    def test_demo_passes_and_embedded_postgres_stops_with_the_service(self, tmp_path: Path) -> None:
        port = _free_port()
        data_dir = tmp_path / "postgres"
        log = tmp_path / "serve.log"
        base = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own entry point
                [str(BIN / "payments-api"), "serve", "--port", str(port)],
                cwd=tmp_path,
                env=_clean_env(data_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until(
                lambda: _ready(f"{base}/readyz", process, log), START_TIMEOUT_SECONDS, "readyz"
            )
            assert httpx.get(f"{base}/readyz", trust_env=False).json()["sandbox"] is True
            postgres = _postmaster_pid(data_dir)

            demo = subprocess.run(  # noqa: S603 - our own entry point
                [str(BIN / "payments-api"), "demo", "--base-url", base],
                cwd=tmp_path,
                env=_clean_env(tmp_path / "unused"),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
            assert "All balances are as the specification says." in demo.stdout

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0
            _wait_until(lambda: not _alive(postgres), STOP_TIMEOUT_SECONDS, "postgres to stop")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            pidfile = data_dir / "postmaster.pid"
            if pidfile.exists() and _alive(_postmaster_pid(data_dir)):
                os.kill(_postmaster_pid(data_dir), signal.SIGTERM)


def _handle_pids(data_dir: Path) -> list[int]:
    """The processes pgserver counts as users of the embedded server in ``data_dir``."""
    try:
        pids = json.loads((data_dir / ".handle_pids.json").read_text())
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int)]


class TestEmbeddedPostgresIsStoppedByItsLastUser:
    def test_a_worker_keeps_it_after_serve_stops_and_stops_it_on_sigterm(
        self, tmp_path: Path
    ) -> None:
        port = _free_port()
        data_dir = tmp_path / "postgres"
        env = {**_clean_env(data_dir), "PAYMENTS_PORT": str(port)}
        processes: list[subprocess.Popen[bytes]] = []

        def start(command: str, log: Path) -> subprocess.Popen[bytes]:
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: S603 - our own entry point
                    [str(BIN / "payments-api"), command],
                    cwd=tmp_path,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            return process

        serve_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
        try:
            serve = start("serve", serve_log)
            _wait_until(
                lambda: _ready(f"http://127.0.0.1:{port}/readyz", serve, serve_log),
                START_TIMEOUT_SECONDS,
                "readyz",
            )
            postgres = _postmaster_pid(data_dir)
            worker = start("worker", worker_log)
            _wait_until(
                lambda: worker.pid in _handle_pids(data_dir) or worker.poll() is not None,
                START_TIMEOUT_SECONDS,
                "the worker to use the embedded server",
            )
            assert worker.poll() is None, worker_log.read_text()[-4000:]

            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=STOP_TIMEOUT_SECONDS) == 0
            # serve's exit hooks have run: the worker still uses the server, so it stays.
            assert _alive(postgres)
            assert _handle_pids(data_dir) == [worker.pid]

            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=STOP_TIMEOUT_SECONDS) == 0, worker_log.read_text()[-4000:]
            _wait_until(lambda: not _alive(postgres), STOP_TIMEOUT_SECONDS, "postgres to stop")
            assert _handle_pids(data_dir) == []
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            pidfile = data_dir / "postmaster.pid"
            if pidfile.exists() and _alive(_postmaster_pid(data_dir)):
                os.kill(_postmaster_pid(data_dir), signal.SIGTERM)


class TestDeadUsersAreForgotten:
    def test_a_process_gone_without_its_exit_hooks_no_longer_counts(self, tmp_path: Path) -> None:
        # A user killed with SIGKILL stays listed; from then on nobody would be last.
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        (tmp_path / ".handle_pids.json").write_text(json.dumps([gone.pid, os.getpid()]))
        _forget_dead_handles(tmp_path)
        assert _handle_pids(tmp_path) == [os.getpid()]

    def test_a_list_of_live_users_is_left_as_it_is(self, tmp_path: Path) -> None:
        (tmp_path / ".handle_pids.json").write_text(json.dumps([os.getpid()]))
        _forget_dead_handles(tmp_path)
        assert _handle_pids(tmp_path) == [os.getpid()]
