"""Record the SQL one HTTP request sends, and replay it through raw asyncpg.

Baselines A (raw asyncpg in the load process) and C (a minimal FastAPI route on an
asyncpg pool) must run *the same SQL statements the request executes*. Rather than
re-typing each route's statements (which would drift from the service), the benchmark
runs every request kind once in-process through the real application while every call
that reaches asyncpg is recorded (:class:`Recorder`): the statement text exactly as
sent (SQLAlchemy's compiled text, or the ledger's hand-written SQL), its bind values
and its result rows. A recording is then compiled into a :class:`Program` that sends
the same statements, in the same order and transactions, for another user, key, escrow
or event:

- *inputs* (user ids, Idempotency-Keys, event ids, ...) are named by the caller with
  the value they had in the recorded request;
- values that the database handed back (an ``id`` returned by ``INSERT ... RETURNING``,
  an account id, a user id read from a row) are *learned*: in the replay the value the
  database returns there is used wherever the recorded value was used later, also
  inside strings and bytes (cause keys such as ``escrow:<id>:accept``, JSON metadata,
  a stored response body);
- the shard picked by the ledger's ``PICK_FREE_SHARD`` (``FOR UPDATE SKIP LOCKED``) is
  carried into the matching element of ``APPLY_DELTAS``, as ``LedgerService`` does.

For this to be unambiguous the benchmark database hands out ids from high, disjoint
ranges (:data:`ID_FLOOR` and above, see ``bench/http.py``), so a learned id can never be
mistaken for an amount or a shard number, and inputs are fixed-width tokens that are
never substrings of one another. Every replayed statement must return as many rows as it
did when recorded (``SKIP LOCKED`` reads excepted): a replay that diverges raises
:class:`Diverged` instead of silently writing something else.

The connection pool's pre-ping (``BEGIN; ;; ROLLBACK`` on every checkout, from
``pool_pre_ping=True``) is recorded but not replayed: it is a cost of the service's
configuration, counted separately in the report (``Program.pings``).
"""

from __future__ import annotations

import functools
import itertools
import pickle
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from payments_api.db import RawStatement
from payments_api.ledger.statements import (
    RAW_APPLY_DELTAS,
    RAW_APPLY_DELTAS_INSERT_POSTINGS,
    RAW_APPLY_OBSERVED,
    RAW_APPLY_OBSERVED_EMITTING,
    RAW_PICK_FREE_SHARD,
)

# The ledger's statements that apply balance deltas (alone, or with the postings in one
# round trip); the shard picked by PICK_FREE_SHARD is carried into their parameters.
_APPLY_STATEMENTS: dict[str, RawStatement] = {
    statement.sql: statement
    for statement in (
        RAW_APPLY_DELTAS,
        RAW_APPLY_DELTAS_INSERT_POSTINGS,
        RAW_APPLY_OBSERVED,
        RAW_APPLY_OBSERVED_EMITTING,
    )
}

ID_FLOOR = 1_000_000_000
"""Ids at or above this value are taken for database-generated ids when learning."""
MIN_TOKEN_LENGTH = 6
"""Shortest string input or learned string id (shorter ones are too likely to occur by
chance inside other text)."""


# --- recording ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Call:
    """One round trip the application made through asyncpg."""

    method: str
    """``fetch`` (rows come back) or ``execute`` (a status only)."""
    sql: str
    args: tuple[Any, ...]
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


class Recorder:
    """Wraps asyncpg's query methods (in this process only) to record every call made
    while :meth:`recording` is active."""

    _installed = False
    _calls: list[Call] | None = None

    @classmethod
    def install(cls) -> None:
        if cls._installed:
            return
        from asyncpg.connection import Connection
        from asyncpg.prepared_stmt import PreparedStatement

        for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
            setattr(Connection, name, cls._wrap(getattr(Connection, name), name, prepared=False))
        for name in ("fetch", "fetchrow", "fetchval", "executemany"):
            setattr(
                PreparedStatement,
                name,
                cls._wrap(getattr(PreparedStatement, name), name, prepared=True),
            )
        cls._installed = True

    @classmethod
    def _wrap(cls, original: Any, name: str, *, prepared: bool) -> Any:
        @functools.wraps(original)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = await original(self, *args, **kwargs)
            if cls._calls is not None:
                if prepared:
                    sql, binds = self.get_query(), args
                else:
                    sql, binds = args[0], args[1:]
                cls._calls.append(_call(name, sql, binds, result))
            return result

        return wrapper

    @classmethod
    @contextmanager
    def recording(cls) -> Iterator[list[Call]]:
        cls.install()
        calls: list[Call] = []
        cls._calls = calls
        try:
            yield calls
        finally:
            cls._calls = None


def _call(name: str, sql: str, binds: Sequence[Any], result: Any) -> Call:
    if name == "executemany":
        raise NotImplementedError("executemany is not replayed (no benchmarked route uses it)")
    if name == "execute":
        return Call("execute", sql, tuple(binds), (), ())
    if name == "fetch":
        records = list(result)
    elif name == "fetchrow":
        records = [] if result is None else [result]
    else:  # fetchval: one value of the first row; the column name is not known
        return Call("fetch", sql, tuple(binds), ("?",), ((result,),))
    columns = tuple(records[0].keys()) if records else ()
    return Call("fetch", sql, tuple(binds), columns, tuple(tuple(r.values()) for r in records))


# --- compiling --------------------------------------------------------------------------------
Values = dict[str, Any]
Builder = Callable[[Values], Any]


class Diverged(Exception):
    """The replay got a different answer from the database than the recording did."""


def _constant(value: Any) -> Builder:
    return lambda values: value


def _slot(name: str) -> Builder:
    return lambda values: values[name]


def _shard(name: str) -> Builder:
    # LedgerRepository.pick_free_shard: every shard taken -> wait for shard 0.
    return lambda values: 0 if values[name] is None else values[name]


@dataclass(slots=True)
class Step:
    method: str
    sql: str
    builders: list[Builder]
    expected_rows: int | None
    """Rows the recording got (None: not checked, e.g. SKIP LOCKED)."""
    learn: list[tuple[str, int, int]] = field(default_factory=list)
    """(slot, recorded row, column) to read from this step's result."""
    match_columns: tuple[int, ...] = ()
    """Columns identifying a row when the result has several (their order may differ)."""
    match_keys: list[tuple[Builder, ...]] = field(default_factory=list)
    """Per recorded row: the expected values of ``match_columns``."""


@dataclass(slots=True)
class Program:
    name: str
    steps: list[Step]
    outputs: dict[str, str]
    """Output name -> slot holding it after a run."""
    pings: int
    """Pool pre-pings (BEGIN; ;; ROLLBACK) in the recording, not replayed."""
    statements: int
    """Round trips of the recording, BEGIN/COMMIT and pings included."""

    async def run(self, connection: Any, inputs: Mapping[str, Any]) -> tuple[Values, list[Any]]:
        """Send the program's statements on ``connection``; returns the outputs and the
        rows of every step. On any error an open transaction is rolled back."""
        values: Values = dict(inputs)
        results: list[Any] = []
        try:
            for step in self.steps:
                args = [build(values) for build in step.builders]
                if step.method == "execute":
                    await connection.execute(step.sql, *args)
                    results.append(None)
                    continue
                rows = await connection.fetch(step.sql, *args)
                results.append(rows)
                if step.expected_rows is not None and len(rows) != step.expected_rows:
                    raise Diverged(
                        f"{self.name}: {len(rows)} rows instead of {step.expected_rows} from "
                        f"{' '.join(step.sql.split())[:120]}"
                    )
                if step.learn:
                    _learn(step, rows, values)
        except BaseException:
            if not connection.is_closed() and connection.is_in_transaction():
                await connection.execute("ROLLBACK")
            raise
        return {name: values[slot] for name, slot in self.outputs.items()}, results


def _learn(step: Step, rows: Sequence[Any], values: Values) -> None:
    if len(rows) == 1 or not step.match_columns:
        ordered = list(rows)
    else:
        by_key = {tuple(row[c] for c in step.match_columns): row for row in rows}
        ordered = []
        for key in step.match_keys:
            wanted = tuple(build(values) for build in key)
            if wanted not in by_key:
                raise Diverged(f"no replayed row matches {wanted}")
            ordered.append(by_key[wanted])
    for slot, row, column in step.learn:
        values[slot] = ordered[row][column]


def _learnable(column: str, value: Any) -> bool:
    # Only id columns: a balance or an amount may be as large as an id.
    if isinstance(value, bool) or not (column == "id" or column.endswith("_id") or column == "?"):
        return False
    if isinstance(value, int):
        return value >= ID_FLOOR
    return isinstance(value, str) and len(value) >= MIN_TOKEN_LENGTH


class _Sources:
    """Which recorded values stand for an input or a learned value (by slot name)."""

    def __init__(self, inputs: Mapping[str, Any]) -> None:
        self.slots: dict[Any, str] = {}
        self.texts: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        for name, value in inputs.items():
            self.add(value, name)

    def add(self, value: Any, slot: str) -> None:
        if value in self.slots:
            return
        self.slots[value] = slot
        text = str(value)
        if len(text) >= MIN_TOKEN_LENGTH and text not in self.texts:
            self.texts[text] = slot
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        if self._pattern is None and self.texts:
            # Longest first, so that no token is cut by a shorter one it contains.
            alternatives = sorted(self.texts, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(a) for a in alternatives))
        return self._pattern

    def builder(self, value: Any) -> Builder:
        if isinstance(value, bool) or value is None:
            return _constant(value)
        if isinstance(value, int | str) and value in self.slots:
            return _slot(self.slots[value])
        if isinstance(value, str):
            return self._template(value, bytes_=False) or _constant(value)
        if isinstance(value, bytes):
            return self._template(value.decode("latin-1"), bytes_=True) or _constant(value)
        if isinstance(value, list | tuple):
            parts = [self.builder(v) for v in value]
            kind = type(value)
            return lambda values: kind(build(values) for build in parts)
        return _constant(value)

    def _template(self, text: str, *, bytes_: bool) -> Builder | None:
        pattern = self.pattern()
        if pattern is None:
            return None
        pieces: list[str | tuple[str]] = []
        last = 0
        for found in pattern.finditer(text):
            pieces.append(text[last : found.start()])
            pieces.append((self.texts[found.group()],))
            last = found.end()
        if last == 0:
            return None
        pieces.append(text[last:])

        def render(values: Values) -> Any:
            out = "".join(p if isinstance(p, str) else str(values[p[0]]) for p in pieces)
            return out.encode("latin-1") if bytes_ else out

        return render


def _is_ping(calls: Sequence[Call], i: int) -> bool:
    return (
        i + 2 < len(calls)
        and calls[i].sql.strip().upper().startswith("BEGIN")
        and calls[i + 1].sql.strip() == ";"
        and calls[i + 2].sql.strip().upper().startswith("ROLLBACK")
    )


def compile_program(
    name: str, calls: Sequence[Call], inputs: Mapping[str, Any], outputs: Mapping[str, Any]
) -> Program:
    """A replayable program from a recording. ``inputs`` and ``outputs`` name values of
    the recorded request (e.g. ``{"user": "u0000001"}``, ``{"escrow": 2000000005}``)."""
    sources = _Sources(inputs)
    steps: list[Step] = []
    pings = 0
    picked_shards: list[tuple[int, int, str]] = []
    """(account id, recorded shard, slot) of the current ledger post's PICK_FREE_SHARD."""
    i = 0
    while i < len(calls):
        if _is_ping(calls, i):
            pings += 1
            i += 3
            continue
        call = calls[i]
        i += 1
        builders = [sources.builder(arg) for arg in call.args]
        skip_locked = "SKIP LOCKED" in call.sql.upper()
        step = Step(
            method=call.method,
            sql=call.sql,
            builders=builders,
            expected_rows=None if skip_locked or call.method == "execute" else len(call.rows),
        )
        if call.sql in _APPLY_STATEMENTS and picked_shards:
            _carry_shards(step, call, sources, picked_shards, _APPLY_STATEMENTS[call.sql])
            picked_shards = []
        if call.sql == RAW_PICK_FREE_SHARD.sql:
            slot = f"#{len(steps)}.shard"
            step.learn.append((slot, 0, 0))
            step.expected_rows = None
            account = call.args[RAW_PICK_FREE_SHARD.params.index("account_id")]
            picked_shards.append((account, call.rows[0][0] if call.rows else 0, slot))
        else:
            _plan_learning(step, call, sources, len(steps), _text_of(calls[i:]))
        steps.append(step)
    missing = [out for out, value in outputs.items() if value not in sources.slots]
    if missing:
        raise ValueError(f"{name}: outputs {missing} never came back from the database")
    return Program(
        name=name,
        steps=steps,
        outputs={out: sources.slots[value] for out, value in outputs.items()},
        pings=pings,
        statements=len(calls),
    )


def _carry_shards(
    step: Step,
    call: Call,
    sources: _Sources,
    picked: list[tuple[int, int, str]],
    statement: RawStatement = RAW_APPLY_DELTAS,
) -> None:
    params = statement.params
    account_ids = call.args[params.index("account_ids")]
    shards = list(call.args[params.index("shards")])
    account_builders = [sources.builder(a) for a in account_ids]
    shard_builders: list[Builder] = [_constant(s) for s in shards]
    for account, shard, slot in picked:
        for k, (a, s) in enumerate(zip(account_ids, shards, strict=True)):
            if a == account and s == shard:
                shard_builders[k] = _shard(slot)
                break
        else:
            raise ValueError(f"APPLY_DELTAS does not name the shard picked for {account}")
    step.builders[params.index("account_ids")] = lambda values: [
        b(values) for b in account_builders
    ]
    step.builders[params.index("shards")] = lambda values: [b(values) for b in shard_builders]


def _text_of(calls: Sequence[Call]) -> str:
    """Every bind value of ``calls`` as text, to tell which values are used later."""

    def flat(value: Any) -> Iterator[str]:
        if isinstance(value, list | tuple):
            for item in value:
                yield from flat(item)
        elif isinstance(value, bytes):
            yield value.decode("latin-1")
        elif value is not None:
            yield str(value)

    return "\x00".join(text for call in calls for arg in call.args for text in flat(arg))


def _plan_learning(step: Step, call: Call, sources: _Sources, index: int, later: str) -> None:
    new: list[tuple[Any, int, int]] = []
    for r, row in enumerate(call.rows):
        for c, value in enumerate(row):
            column = call.columns[c] if c < len(call.columns) else "?"
            if _learnable(column, value) and value not in sources.slots and str(value) in later:
                new.append((value, r, c))
    if not new:
        return
    if len(call.rows) > 1:
        step.match_columns = _identifying_columns(call, {c for _, _, c in new})
        step.match_keys = [
            tuple(sources.builder(row[c]) for c in step.match_columns) for row in call.rows
        ]
    for value, r, c in new:
        slot = f"#{index}.{r}.{c}"
        step.learn.append((slot, r, c))
        sources.add(value, slot)


def _identifying_columns(call: Call, learned: set[int]) -> tuple[int, ...]:
    """The fewest stable columns (str, bool or small int; not learned) telling the
    recorded rows apart."""
    candidates = [
        c
        for c in range(len(call.columns))
        if c not in learned
        and all(
            v is None or isinstance(v, str | bool) or (isinstance(v, int) and v < ID_FLOOR)
            for v in (row[c] for row in call.rows)
        )
    ]
    for size in (1, 2, 3):
        for combo in itertools.combinations(candidates, size):
            keys = {tuple(row[c] for c in combo) for row in call.rows}
            if len(keys) == len(call.rows):
                return combo
    raise ValueError(f"cannot tell the rows of {' '.join(call.sql.split())[:80]} apart")


# --- storage ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    calls: list[Call]
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    def compile(self) -> Program:
        return compile_program(self.name, self.calls, self.inputs, self.outputs)


def save(recordings: Sequence[Recording], path: Path) -> None:
    path.write_bytes(pickle.dumps(list(recordings)))


def load_programs(path: Path) -> dict[str, Program]:
    recordings: list[Recording] = pickle.loads(path.read_bytes())  # noqa: S301 (our own file)
    return {r.name: r.compile() for r in recordings}
