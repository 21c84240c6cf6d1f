"""The in-process CPU benchmark (bench/cpu.py) runs every scenario and cleans up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.cpu import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


def test_every_scenario_runs_and_reports_its_cpu() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cpu", "--operations", "5", "--repeats", "1"],
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
