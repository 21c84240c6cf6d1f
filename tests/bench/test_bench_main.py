"""``python -m bench`` keeps every other benchmark's figures when the ledger benchmark
rewrites RESULTS.md, until a run of their own replaces them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as bench_main
from bench import commits, events, http, ledger

SECTIONS = {
    "http": (http.SECTION_START, "old HTTP figures\n", http.SECTION_END),
    "readpath": (bench_main.READPATH_START, "old readpath figures\n", bench_main.READPATH_END),
    "events": (events.SECTION_START, "old events figures\n", events.SECTION_END),
    "commits": (commits.START, "old commits figures", commits.END),
}


def test_a_full_run_whose_other_benchmarks_write_nothing_keeps_their_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Ledger benchmark results\nold ledger figures\n\n"
        + "\n".join(f"{start}\n{body}{end}\n" for start, body, end in SECTIONS.values())
    )
    for module, name in (
        (http, "DEFAULT_RESULTS"),
        (events, "DEFAULT_RESULTS"),
        (commits, "RESULTS"),
        (bench_main, "RESULTS"),
    ):
        monkeypatch.setattr(module, name, results)

    def ledger_run(*_: Any) -> int:
        results.write_text("# Ledger benchmark results\nnew ledger figures\n")
        return 0

    monkeypatch.setattr(ledger, "main", ledger_run)
    # The HTTP and commits runs complete without writing; the events run stops half-way.
    monkeypatch.setattr(http, "main", lambda *_: 0)
    monkeypatch.setattr(events, "main", lambda *_: 1)
    monkeypatch.setattr(commits, "main", lambda *_: 0)

    assert bench_main.main([]) == 1

    text = results.read_text()
    assert text.startswith("# Ledger benchmark results\nnew ledger figures\n")
    for start, body, end in SECTIONS.values():
        assert text.count(start) == 1
        assert f"{start}\n{body.strip()}" in text
        assert text.count(end) == 1
