"""The in-process CPU benchmark (bench/cpu.py) runs every scenario and cleans up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.cpu import LAYERS, SCENARIOS, layer_clocks, own_shares
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]


def test_every_scenario_runs_and_reports_its_cpu_and_its_layers() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cpu", "--operations", "5", "--repeats", "1", "--layers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = re.findall(r"^\| (\w+) \| (\d+) \| \d+ \| - \|$", result.stdout, re.MULTILINE)
    assert [name for name, _ in rows] == list(SCENARIOS)
    assert all(int(us) > 0 for _, us in rows)
    cells = r" \| ".join([r"(-?\d+)"] * (len(LAYERS) + 2))
    layers = {
        match[0]: [int(value) for value in match[1:]]
        for match in re.findall(rf"^\| (\w+) \| {cells} \|$", result.stdout, re.MULTILINE)
    }
    assert list(layers) == list(SCENARIOS)
    for name, (total, *_, route, driver) in layers.items():
        assert total > 0, name
        assert driver > 0, name
        # A replay is answered from the stored response: the route never runs.
        assert (route == 0) == (name == "replay"), name


def test_the_clocks_are_taken_off_when_the_block_ends() -> None:
    original = FastAPI.__call__
    with layer_clocks() as spent:
        assert FastAPI.__call__ is not original
    assert FastAPI.__call__ is original
    assert own_shares(spent, 1)["total"] == 0
