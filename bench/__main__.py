"""Every benchmark, in turn: ``.venv/bin/python -m bench [--quick] [--only ...]``.

1. the ledger benchmark (``bench/ledger.py``: settlements through ``LedgerService``
   against raw SQL), run here with 3 s per measurement so that the whole default run
   stays under 10 minutes on 2 cores;
2. the HTTP benchmark (``bench/http.py``: the six scenarios against the running
   service and baselines A, A0, B and C, and the open-loop runs);
3. the outgoing-events benchmark (``bench/events.py``: settlement with and without the
   outbox, delivery throughput);
4. transactions and statements per request (``bench/commits.py``, counted by
   PostgreSQL; about a minute).

``--quick`` is a smoke run of all (prints only). ``--only`` takes ``ledger``,
``events``, ``commits`` and/or HTTP scenarios (``balance, earnings, settlement,
webhook, webhook-dup, replay``). The exit status is the worst of the benchmarks':
non-zero when a request failed, money was broken or a DB-only write committed other
than once. Full runs rewrite ``bench/RESULTS.md``: the ledger benchmark the whole file,
the others their delimited sections, each kept until a completed run of its own
benchmark replaces it (``bench/readpath.py``'s section is written by hand and kept).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import commits, events, http, ledger

LEDGER_SECONDS = "3"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument(
        "--only",
        default="",
        help="ledger, events, commits and/or HTTP scenarios: ledger, events, commits, "
        + ", ".join(http.SCENARIOS),
    )
    parser.add_argument(
        "--wait-quiet",
        default=None,
        metavar="SECONDS",
        help="passed to both: wait for other work on the machine to stop before each measurement",
    )
    parser.add_argument("--workers", default=None, help="uvicorn workers of the HTTP benchmark")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    chosen = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = chosen - {"ledger", "events", "commits", *http.SCENARIOS}
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    scenarios = sorted(chosen & set(http.SCENARIOS), key=http.SCENARIOS.index)
    run_ledger = not chosen or "ledger" in chosen
    run_http = not chosen or bool(scenarios)
    run_events = not chosen or "events" in chosen
    run_commits = not chosen or "commits" in chosen

    common = ["--wait-quiet", args.wait_quiet] if args.wait_quiet else []
    status = 0
    if run_ledger:
        # The ledger benchmark rewrites the whole file: every other section is kept and
        # put back, and replaced only by a run of its own benchmark that completes (a
        # benchmark that stops half-way leaves its last figures, not a hole).
        kept = None if args.quick else _http_section()
        kept_readpath = None if args.quick else _section(RESULTS, READPATH_START, READPATH_END)
        kept_events = (
            None
            if args.quick
            else _section(events.DEFAULT_RESULTS, events.SECTION_START, events.SECTION_END)
        )
        kept_commits = None if args.quick else commits.current_section()
        ledger_args = ["--quick"] if args.quick else ["--seconds", LEDGER_SECONDS]
        status = max(status, ledger.main([*ledger_args, *common], "bench.ledger"))
        if kept:
            http.write_section(http.DEFAULT_RESULTS, kept)
        if kept_readpath:
            with RESULTS.open("a") as results:
                results.write(f"\n{READPATH_START}\n{kept_readpath}{READPATH_END}\n")
        if kept_events:
            events.write_section(events.DEFAULT_RESULTS, kept_events)
        if kept_commits:
            commits.write_section(kept_commits)
    if run_http:
        http_args = ["--quick"] if args.quick else []
        if scenarios:
            http_args += ["--only", ",".join(scenarios)]
        if args.workers:
            http_args += ["--workers", args.workers]
        status = max(status, http.main([*http_args, *common], "bench.http"))
    if run_events:
        status = max(status, events.main(["--quick"] if args.quick else []))
    if run_commits:
        commits_args = ["--requests", "5"] if args.quick else ["--write"]
        status = max(status, commits.main(commits_args))
    return status


RESULTS = http.DEFAULT_RESULTS
READPATH_START, READPATH_END = "<!-- readpath:start -->", "<!-- readpath:end -->"
"""``bench/readpath.py``'s section: written by hand from its output, never by this run."""


def _section(path: Path, start: str, end: str) -> str | None:
    """A benchmark's delimited section of RESULTS.md, which a ledger run would drop."""
    if not path.exists():
        return None
    text = path.read_text()
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].lstrip("\n")


def _http_section() -> str | None:
    """The HTTP section of RESULTS.md, which a ledger-only run would otherwise drop."""
    path = http.DEFAULT_RESULTS
    if not path.exists():
        return None
    text = path.read_text()
    if http.SECTION_START not in text or http.SECTION_END not in text:
        return None
    return text.split(http.SECTION_START, 1)[1].split(http.SECTION_END, 1)[0]


if __name__ == "__main__":
    sys.exit(main())
