"""The outgoing-events benchmark (bench/events.py) runs and its delivery check holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.events import SECTION_START, write_section

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_run_delivers_every_event_exactly_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.events", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| to one endpoint | 1 |" in result.stdout
    assert result.stdout.count("| 50 / 50 |") == 2
    for variant in ("| off |", "| on |", "| on+endpoint |"):
        assert variant in result.stdout
    # Through HTTP too: off and on (the bench itself checks that off wrote no event and
    # on three per settlement).
    assert "| settlement through HTTP |" in result.stdout
    assert result.stdout.count("| off |") == 2
    assert result.stdout.count("| on |") == 2


def test_the_section_is_replaced_not_repeated(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nledger figures\n")
    write_section(results, "first\n")
    write_section(results, "second\n")
    text = results.read_text()
    assert text.count(SECTION_START) == 1
    assert "second" in text
    assert "first" not in text
    assert text.startswith("# Results\n\nledger figures\n")
