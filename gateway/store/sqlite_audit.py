"""The audit trail's SQL on the SQLite store: appending with summaries, windowed failure counts, and retention
in small batches.

Two summaries are kept in the transaction that appends (and the one that prunes) the handoffs they summarise,
so neither can disagree with the rows: ``runs`` (one row per run, for ``GET /runs``) and ``failure_minutes``
(failures per minute, route, category and mode, for ``/stats/failures``: an hour's window sums at most 60
minutes of buckets, however many handoffs it holds). Retention never deletes more than :data:`PRUNE_BATCH`
rows per transaction, so the store's lock is released every few milliseconds during a pass of any size.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.store.base import PRUNE_BATCH, FailureCount, HandoffRecord
from gateway.store.codec import encode_record
from gateway.store.sqlite_schema import transaction

_INSERT = (
    "INSERT INTO handoffs (id, run_id, started_at, route, verdict, category, mode, record)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_RUN = (
    "INSERT INTO runs (run_id, first_at, last_at, handoffs, failures) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id) DO UPDATE SET first_at = MIN(first_at, excluded.first_at),"
    " last_at = MAX(last_at, excluded.last_at), handoffs = handoffs + excluded.handoffs,"
    " failures = failures + excluded.failures"
)
_ADD_FAILURES = (
    "INSERT INTO failure_minutes (minute, route, category, mode, count) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (minute, route, category, mode) DO UPDATE SET count = count + excluded.count"
)
# After deleting some of a run's handoffs: a run left with none goes, the others get their counts and bounds
# from what remains (MIN/MAX read the handoffs_run index: two lookups per run, not a scan).
_DROP_EMPTY_RUN = "DELETE FROM runs WHERE run_id = ? AND handoffs <= ?"
_SHRINK_RUN = (
    "UPDATE runs SET handoffs = handoffs - ?, failures = failures - ?,"
    " first_at = (SELECT MIN(started_at) FROM handoffs h WHERE h.run_id = runs.run_id),"
    " last_at = (SELECT MAX(started_at) FROM handoffs h WHERE h.run_id = runs.run_id) WHERE run_id = ?"
)
_DROP_FAILURES = (
    "DELETE FROM failure_minutes WHERE minute = ? AND route = ? AND category = ? AND mode = ? AND count <= ?"
)
_SHRINK_FAILURES = (
    "UPDATE failure_minutes SET count = count - ? WHERE minute = ? AND route = ? AND category = ? AND mode = ?"
)
# The two retention rules, each as "the next batch of doomed rows".
_DOOMED = "SELECT seq, run_id, started_at, route, category, mode FROM handoffs"
_OLDEST_BEFORE = f"{_DOOMED} WHERE started_at < ? ORDER BY started_at LIMIT ?"
_FIRST_UP_TO = f"{_DOOMED} WHERE seq <= ? ORDER BY seq LIMIT ?"
# Whole minutes from the buckets, the minute the window starts in from the failures' partial index.
_FAILURE_COUNTS = """
SELECT route, category, NULLIF(mode, ''), SUM(n) FROM (
    SELECT route, category, mode, count AS n FROM failure_minutes WHERE minute >= :minute
    UNION ALL
    SELECT route, category, COALESCE(mode, ''), 1 FROM handoffs INDEXED BY handoffs_failures
    WHERE category IS NOT NULL AND started_at >= :since AND started_at < :minute * 60
) GROUP BY route, category, mode ORDER BY route, category, mode
"""

Bucket = tuple[int, str, str, str]
"""A failure's minute (``started_at // 60``), route, category and mode (``""`` for none)."""


def _buckets(failures: Iterable[tuple[float, str, str, str | None]]) -> Counter[Bucket]:
    return Counter((int(at // 60), route, category, mode or "") for at, route, category, mode in failures)


def append(c: sqlite3.Connection, records: Sequence[HandoffRecord]) -> None:
    """Insert a batch and fold it into the run and failure summaries, in one transaction."""
    rows = [
        (r.id, r.run_id, r.started_at, r.target, r.verdict, r.category, r.failure_mode, encode_record(r))
        for r in records
    ]
    runs: dict[str, list[Any]] = {}
    for r in records:
        summary = runs.setdefault(r.run_id, [r.run_id, r.started_at, r.started_at, 0, 0])
        summary[1] = min(summary[1], r.started_at)
        summary[2] = max(summary[2], r.started_at)
        summary[3] += 1
        summary[4] += r.category is not None
    failures = _buckets((r.started_at, r.target, r.category, r.failure_mode) for r in records if r.category)
    with transaction(c):
        c.executemany(_INSERT, rows)
        c.executemany(_UPSERT_RUN, list(runs.values()))
        c.executemany(_ADD_FAILURES, [(*bucket, n) for bucket, n in failures.items()])


def failure_counts(c: sqlite3.Connection, since: float) -> list[FailureCount]:
    """Failures started at ``since`` or later, by route, category and mode."""
    rows = c.execute(_FAILURE_COUNTS, {"since": since, "minute": math.ceil(since / 60)}).fetchall()
    return [FailureCount(*row) for row in rows]


def prune_cutoff(c: sqlite3.Connection, keep: int) -> int:
    """The highest ``seq`` beyond the newest ``keep`` (0: nothing). Sequence numbers are handed out in order and
    only the oldest are ever deleted, so the newest ``keep`` records are those above ``MAX(seq) - keep``: one
    index lookup, where ``OFFSET keep`` walked ``keep`` rows."""
    top = c.execute("SELECT MAX(seq) FROM handoffs").fetchone()[0]
    return 0 if top is None else max(0, int(top) - keep)


def prune_batch(c: sqlite3.Connection, *, up_to_seq: int, older_than: float) -> int:
    """Delete at most :data:`PRUNE_BATCH` records (those started before ``older_than`` first, then those with
    ``seq <= up_to_seq``) and their share of the summaries; how many were deleted (0: done)."""
    with transaction(c):
        doomed = c.execute(_OLDEST_BEFORE, (older_than, PRUNE_BATCH)).fetchall()
        if not doomed:
            doomed = c.execute(_FIRST_UP_TO, (up_to_seq, PRUNE_BATCH)).fetchall()
        if not doomed:
            return 0
        c.executemany("DELETE FROM handoffs WHERE seq = ?", [(row[0],) for row in doomed])
        handoffs = Counter(row[1] for row in doomed)
        failed = Counter(row[1] for row in doomed if row[4] is not None)
        c.executemany(_DROP_EMPTY_RUN, list(handoffs.items()))
        c.executemany(_SHRINK_RUN, [(n, failed[run_id], run_id) for run_id, n in handoffs.items()])
        buckets = _buckets(row[2:] for row in doomed if row[4] is not None)
        c.executemany(_DROP_FAILURES, [(*bucket, n) for bucket, n in buckets.items()])
        c.executemany(_SHRINK_FAILURES, [(n, *bucket) for bucket, n in buckets.items()])
    return len(doomed)


def prune_artifacts_batch(c: sqlite3.Connection, older_than: float) -> int:
    """Delete at most :data:`PRUNE_BATCH` artifact versions produced before ``older_than``."""
    with transaction(c):
        return int(
            c.execute(
                "DELETE FROM artifacts WHERE seq IN"
                " (SELECT seq FROM artifacts WHERE produced_at < ? ORDER BY produced_at LIMIT ?)",
                (older_than, PRUNE_BATCH),
            ).rowcount
        )
