"""The audit trail's SQL on the SQLite store: appending with run summaries, and retention in small batches.

Each function is one transaction on a connection the caller holds the lock of. Retention never deletes more
than :data:`PRUNE_BATCH` rows per transaction, so the lock (which checkpoints, admin writes and the audit
writer also need) is released every few milliseconds during a pass, however much there is to delete.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.store.base import HandoffRecord
from gateway.store.codec import encode_record
from gateway.store.sqlite_schema import transaction

PRUNE_BATCH = 500
"""Rows deleted per transaction: about 5 ms of lock hold on a laptop-class disk (see loadtests/scale_store.py)."""

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
# After deleting some of a run's handoffs: a run left with none goes, the others get their counts and bounds
# from what remains (MIN/MAX read the handoffs_run index: two lookups per run, not a scan).
_DROP_EMPTY_RUN = "DELETE FROM runs WHERE run_id = ? AND handoffs <= ?"
_SHRINK_RUN = (
    "UPDATE runs SET handoffs = handoffs - ?, failures = failures - ?,"
    " first_at = (SELECT MIN(started_at) FROM handoffs h WHERE h.run_id = runs.run_id),"
    " last_at = (SELECT MAX(started_at) FROM handoffs h WHERE h.run_id = runs.run_id) WHERE run_id = ?"
)
# The two retention rules, each as "the next batch of doomed rows" (seq, run_id, is-a-failure).
_OLDEST_BEFORE = (
    "SELECT seq, run_id, category IS NOT NULL FROM handoffs WHERE started_at < ? ORDER BY started_at LIMIT ?"
)
_FIRST_UP_TO = "SELECT seq, run_id, category IS NOT NULL FROM handoffs WHERE seq <= ? ORDER BY seq LIMIT ?"


def append(c: sqlite3.Connection, records: Sequence[HandoffRecord]) -> None:
    """Insert a batch and fold it into the run summaries, in one transaction (a summary never disagrees with
    the rows it summarises)."""
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
    with transaction(c):
        c.executemany(_INSERT, rows)
        c.executemany(_UPSERT_RUN, list(runs.values()))


def prune_cutoff(c: sqlite3.Connection, keep: int) -> int:
    """The highest ``seq`` beyond the newest ``keep`` (0: nothing). Sequence numbers are handed out in order and
    only the oldest are ever deleted, so the newest ``keep`` records are those above ``MAX(seq) - keep``: one
    index lookup, where ``OFFSET keep`` walked ``keep`` rows."""
    top = c.execute("SELECT MAX(seq) FROM handoffs").fetchone()[0]
    return 0 if top is None else max(0, int(top) - keep)


def prune_batch(c: sqlite3.Connection, *, up_to_seq: int, older_than: float) -> int:
    """Delete at most :data:`PRUNE_BATCH` records (those started before ``older_than`` first, then those with
    ``seq <= up_to_seq``) and their share of the run summaries; how many were deleted (0: done)."""
    with transaction(c):
        doomed = c.execute(_OLDEST_BEFORE, (older_than, PRUNE_BATCH)).fetchall()
        if not doomed:
            doomed = c.execute(_FIRST_UP_TO, (up_to_seq, PRUNE_BATCH)).fetchall()
        if not doomed:
            return 0
        c.executemany("DELETE FROM handoffs WHERE seq = ?", [(seq,) for seq, _, _ in doomed])
        removed: dict[str, list[int]] = {}
        for _, run_id, failed in doomed:
            counts = removed.setdefault(run_id, [0, 0])
            counts[0] += 1
            counts[1] += failed
        c.executemany(_DROP_EMPTY_RUN, [(run_id, n) for run_id, (n, _) in removed.items()])
        c.executemany(_SHRINK_RUN, [(n, f, run_id) for run_id, (n, f) in removed.items()])
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
