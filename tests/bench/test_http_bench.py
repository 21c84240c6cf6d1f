"""The HTTP benchmark (bench/http.py): a smoke run against the real database, and the
two pieces its figures rest on (SQL replay for baselines A and C, the RESULTS.md
section it owns)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from bench.http import SECTION_END, SECTION_START, write_section
from bench.replay import Call, Diverged, compile_program

from payments_api.db import asyncpg_dsn
from tests.db_setup import admin_url

ROOT = Path(__file__).resolve().parents[2]
# A name per run: two runs on one server (two clones, CI beside a developer) never collide.
SMOKE_DATABASE = f"payments_bench_smoke_{uuid.uuid4().hex[:12]}"
EVERY_MEASUREMENT = {
    ("constant", "b"),
    *(
        (scenario, target)
        for scenario in ("balance", "earnings-first", "earnings-deep", "settlement", "webhook")
        for target in ("service", "a", "c")
    ),
    ("settlement", "a0"),
    ("webhook-dup", "service"),
    ("replay", "service"),
    ("replay", "a"),
    ("replay", "c"),
}


async def _drop(name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


class TestHttpBenchmarkSmokeRun:
    def test_every_scenario_is_measured_and_money_holds(self, tmp_path: Path) -> None:
        out = tmp_path / "bench.json"
        try:
            done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "bench.http",
                    "--quick",
                    "--workers",
                    "1",
                    # Long enough that a webhook delivery (200 ms at p99 on a quiet
                    # machine) completes in the window on a loaded one: at 0.4 s the
                    # webhook scenario finished none once under a load of 14.
                    "--seconds",
                    "1.0",
                    "--warmup",
                    "0.1",
                    "--settlement-clients",
                    "8",
                    "--no-profile",
                    "--database",
                    SMOKE_DATABASE,
                    "--json",
                    str(out),
                ],
                cwd=ROOT,
                env={**os.environ, "BENCH_DATABASE_URL": admin_url()},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            asyncio.run(_drop(SMOKE_DATABASE))
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        report: dict[str, Any] = json.loads(out.read_text())

        measured = {(row["scenario"], row["target"]) for row in report["rows"]}
        assert measured == EVERY_MEASUREMENT
        for row in report["rows"]:
            assert row["errors"] == 0, row
            assert row["ops"] > 0, row
            assert math.isfinite(row["p50_ms"]), row
            assert 0 < row["p50_ms"] <= row["p99_ms"], row
        open_loop = {(row["scenario"], row["load_percent"]) for row in report["open_loop"]}
        assert open_loop == {(s, p) for s in ("settlement", "balance") for p in (50, 80)}
        for row in report["open_loop"]:
            assert row["errors"] == 0, row
            assert row["offered_ops"] > 0, row
            assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"], row
        assert report["broken"] == []
        assert report["money"], "the money checks did not run"
        assert all(line.startswith(("- ok:", "- info:")) for line in report["money"])
        assert "| (1) balance read >= 0.7 x baseline C |" in report["targets"]
        # The printed table carries the same figures.
        assert "| (3) escrow settlement (3 requests) | service | 8 |" in done.stdout


class FakeConnection:
    """Answers a replay with scripted rows and keeps what it was sent."""

    def __init__(self, answers: Sequence[list[tuple[Any, ...]]]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        self.sent.append((sql, args))
        return self.answers.pop(0)

    async def execute(self, sql: str, *args: Any) -> str:
        self.sent.append((sql, args))
        return "OK"

    def is_closed(self) -> bool:
        return False

    def is_in_transaction(self) -> bool:
        return False


RECORDED = [
    Call("execute", "BEGIN;", (), (), ()),
    Call(
        "fetch",
        "INSERT INTO things (owner, key) VALUES ($1, $2) RETURNING id",
        ("u0000001", "key-recorded"),
        ("id",),
        ((5_000_000_001,),),
    ),
    Call(
        "fetch",
        "UPDATE things SET cause = $2, body = $3, amount = $4 WHERE id = $1",
        (
            5_000_000_001,
            "thing:5000000001:done",
            b'{"id":"thg_5000000001","owner":"u0000001"}',
            5_000,
        ),
        (),
        (),
    ),
    Call("execute", "COMMIT;", (), (), ()),
]


class TestReplay:
    async def test_inputs_and_returned_ids_are_substituted_everywhere(self) -> None:
        program = compile_program(
            "thing",
            RECORDED,
            {"owner": "u0000001", "key": "key-recorded"},
            {"thing": 5_000_000_001},
        )
        connection = FakeConnection([[(7_000_000_002,)], []])

        outputs, _ = await program.run(connection, {"owner": "u0000042", "key": "key-new"})

        assert outputs == {"thing": 7_000_000_002}
        assert [args for _, args in connection.sent] == [
            (),
            ("u0000042", "key-new"),
            (
                7_000_000_002,
                "thing:7000000002:done",
                b'{"id":"thg_7000000002","owner":"u0000042"}',
                5_000,  # an amount is never taken for an id
            ),
            (),
        ]

    async def test_a_different_answer_from_the_database_stops_the_replay(self) -> None:
        program = compile_program("thing", RECORDED, {"owner": "u0000001"}, {})
        connection = FakeConnection([[]])  # the insert returned nothing (a conflict)

        with pytest.raises(Diverged):
            await program.run(connection, {"owner": "u0000042"})


class TestResultsSection:
    def test_the_http_section_is_replaced_and_the_rest_kept(self, tmp_path: Path) -> None:
        results = tmp_path / "RESULTS.md"
        results.write_text("# Ledger benchmark results\n\nledger table\n")

        write_section(results, "# HTTP benchmark results\n\nfirst")
        write_section(results, "# HTTP benchmark results\n\nsecond")

        text = results.read_text()
        assert text.startswith("# Ledger benchmark results\n\nledger table\n")
        assert text.count(SECTION_START) == 1
        assert text.count(SECTION_END) == 1
        assert "second" in text
        assert "first" not in text
