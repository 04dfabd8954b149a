"""The store at fleet volume (issue 12): summaries that stay true through retention, queries whose work does not
grow with history, retention in bounded transactions, expired checkpoints swept, keyed requests independent of
audit work, and older files migrated. Costs are counted (SQLite VM steps, rows changed per lock hold), never
timed; loadtests/scale_store.py has the timings."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.store.base import PRUNE_BATCH, HandoffRecord, Store
from gateway.store.codec import encode_record
from gateway.store.sqlite import SQLiteStore
from gateway.store.sqlite_schema import checkpoints_path
from tests.conftest import eventually

CATEGORIES = ("specification", "inter-agent misalignment")
HOLD_LIMIT = 10.0
"""Seconds to wait for a store call made while other work holds a lock: a deadlock breaker for the code under
test (a call that queues behind that work never returns), never a timing the passing case depends on."""


def handoff(n: int, *, every: float = 1.0, run_length: int = 7) -> HandoffRecord:
    failed = n % 5 == 0
    return HandoffRecord(
        id=f"h{n}", run_id=f"r{n // run_length}", step="s", attempt=1, source="a", target=f"agent{n % 2}",
        method="POST", path="/", status=502 if failed else 200, verdict="response_invalid" if failed else "valid",
        trace_id="t", started_at=1000.0 + n * every, duration_ms=1.0,
        category=CATEGORIES[n % 2] if failed else None, failure_mode="information_withholding" if failed else None,
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        backend: Store = SQLiteStore(":memory:")
    else:
        from gateway.store.redis import RedisStore

        backend = RedisStore(request.getfixturevalue("redis_url"), prefix=f"test-{secrets.token_hex(4)}:")
    yield backend
    await backend.close()


async def expected_summaries(store: Store, run_ids: set[str]) -> list[tuple[Any, ...]]:
    """Run summaries recomputed from the records themselves, newest run first."""
    rows = []
    for run_id in run_ids:
        records = await store.run_handoffs(run_id)
        if records:
            times = [r.started_at for r in records]
            failures = sum(r.category is not None for r in records)
            rows.append((run_id, min(times), max(times), len(records), failures))
    return sorted(rows, key=lambda row: -row[2])


async def test_summaries_and_failure_counts_stay_true_through_batched_retention(store: Store) -> None:
    records = [handoff(n) for n in range(1300)]  # more than two retention batches
    for first in range(0, len(records), 400):
        await store.append_handoffs(records[first : first + 400])
    run_ids = {r.run_id for r in records}
    for keep, older_than in ((1000, 0.0), (1000, 1000.0 + 555.5), (400, 0.0)):
        removed = await store.prune_handoffs(keep=keep, older_than=older_than)
        assert removed > 0
        kept = [r for r in records if r.started_at >= older_than][-keep:]
        summaries = [(s.run_id, s.first_at, s.last_at, s.handoffs, s.failures) for s in await store.list_runs(1000)]
        assert summaries == await expected_summaries(store, run_ids)
        assert sum(s[3] for s in summaries) == len(kept)
        for since in (0.0, kept[0].started_at, 1000.0 + 1111.5, 1000.0 + 1260.0, 5000.0):
            counted = Counter(
                (r.target, r.category, r.failure_mode) for r in kept if r.category and r.started_at >= since
            )
            assert {(c.route, c.category, c.mode): c.count for c in await store.failure_counts(since)} == counted


def vm_steps(store: SQLiteStore) -> Callable[[], int]:
    """Count SQLite virtual-machine steps on the store's connection (in thousands): the work a query does."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    store._conn.set_progress_handler(step, 1000)
    return lambda: steps[0]


async def query_work(n: int) -> tuple[int, int]:
    """Work of ``GET /runs`` and of a 10-minute ``/stats/failures`` over ``n`` handoffs, one a second."""
    store = SQLiteStore(":memory:")
    try:
        await store.append_handoffs([handoff(i) for i in range(n)])
        steps = vm_steps(store)
        before = steps()
        assert len(await store.list_runs(20)) == 20
        runs = steps() - before
        before = steps()
        assert await store.failure_counts(1000.0 + n - 600)
        return runs, steps() - before
    finally:
        await store.close()


async def test_runs_and_failure_stats_do_the_same_work_whatever_the_history() -> None:
    small, large = await query_work(2_000), await query_work(20_000)
    assert large[0] <= small[0] * 1.5 + 2, f"GET /runs: {small[0]}k steps at 2k handoffs, {large[0]}k at 20k"
    assert large[1] <= small[1] * 1.5 + 2, f"failures: {small[1]}k steps at 2k handoffs, {large[1]}k at 20k"


class CountingLock:
    """The store's lock, remembering the most rows any single hold changed (``total_changes`` difference)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._lock = threading.Lock()
        self._conn = store._conn
        self._changes = 0
        self.most = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self._changes = self._conn.total_changes

    def __exit__(self, *_: object) -> None:
        self.most = max(self.most, self._conn.total_changes - self._changes)
        self._lock.release()


async def test_retention_deletes_in_bounded_transactions(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    original = store._lock
    try:
        await store.append_handoffs([handoff(n, run_length=10_000) for n in range(3 * PRUNE_BATCH)])
        lock = CountingLock(store)
        store._lock = lock  # type: ignore[assignment]
        assert await store.prune_handoffs(keep=0, older_than=0) == 3 * PRUNE_BATCH
        assert await store.list_runs(10) == []
        assert await store.failure_counts(0) == []
        assert 0 < lock.most <= PRUNE_BATCH * 1.1  # a batch of rows and their summaries (~20 rows), never all
    finally:
        store._lock = original  # closing must not count changes on a closed connection
        await store.close()


async def test_an_expired_checkpoint_disappears_without_any_claim(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path, sweep_interval=0.01, clock=lambda: 5_000.0)
    try:
        for key, expires_at in (("gone", 4_000.0), ("live", 6_000.0)):
            await store.complete_checkpoint(key, "d", status=200, headers={}, body=b"{}", expires_at=expires_at)

        def keys() -> set[str]:
            with sqlite3.connect(checkpoints_path(path)) as c:
                return {row[0] for row in c.execute("SELECT key FROM checkpoints")}

        await eventually(lambda: keys() == {"live"}, what="the expired checkpoint swept")
        live = await store.claim_checkpoint("live", "d", now=5_000.0, ttl=30)
        assert live is not None
        assert live.body == b"{}"
    finally:
        await store.close()


async def test_a_keyed_request_does_not_wait_for_audit_work(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path)
    audit_batch = sqlite3.connect(path, isolation_level=None)
    try:
        audit_batch.execute("BEGIN IMMEDIATE")  # a write transaction in progress on the audit's file...
        with store._lock:  # ...and the store's own lock held, as by a retention batch or an admin write
            claim = store.claim_checkpoint("k", "d", now=1.0, ttl=30, owner="me")
            assert await asyncio.wait_for(claim, HOLD_LIMIT) is None
            done = store.complete_checkpoint("k", "d", status=200, headers={}, body=b"ok", expires_at=99.0)
            await asyncio.wait_for(done, HOLD_LIMIT)
        audit_batch.execute("ROLLBACK")
        hit = await store.claim_checkpoint("k", "d", now=2.0, ttl=30)
        assert hit is not None
        assert (hit.state, hit.body) == ("done", b"ok")
    finally:
        audit_batch.close()
        await store.close()


OLD_SCHEMA = """
CREATE TABLE handoffs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, run_id TEXT NOT NULL, started_at REAL NOT NULL,
    route TEXT NOT NULL, verdict TEXT NOT NULL, category TEXT, mode TEXT, record BLOB NOT NULL
);
CREATE INDEX handoffs_run ON handoffs (run_id, started_at);
CREATE TABLE checkpoints (
    key TEXT PRIMARY KEY, request_digest TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,
    status INTEGER, headers BLOB, body BLOB, owner TEXT
);
"""


async def test_a_file_from_before_the_summaries_opens_with_them_backfilled(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    records = [handoff(n) for n in range(30)]
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
        old.executemany(
            "INSERT INTO handoffs (id, run_id, started_at, route, verdict, category, mode, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.id, r.run_id, r.started_at, r.target, r.verdict, r.category, r.failure_mode, encode_record(r))
             for r in records],
        )  # fmt: skip
        old.execute("INSERT INTO checkpoints VALUES ('k', 'd', 'done', 9e9, 200, '{}', X'6F6B', NULL)")
    store = SQLiteStore(path)
    try:
        summaries = [(s.run_id, s.first_at, s.last_at, s.handoffs, s.failures) for s in await store.list_runs(10)]
        assert summaries == await expected_summaries(store, {r.run_id for r in records})
        counted = Counter((r.target, r.category, r.failure_mode) for r in records if r.category)
        assert {(c.route, c.category, c.mode): c.count for c in await store.failure_counts(0)} == counted
        kept = await store.claim_checkpoint("k", "d", now=1.0, ttl=30)
        assert kept is not None
        assert kept.body == b"ok"  # moved to the checkpoints' own file
        await store.append_handoffs([handoff(30)])  # and the summaries are maintained from here on
        assert (await store.list_runs(1))[0].handoffs == 3
    finally:
        await store.close()
    with sqlite3.connect(path) as migrated:
        names = {row[0] for row in migrated.execute("SELECT name FROM sqlite_master")}
    assert {"runs", "failure_minutes", "handoffs_time", "handoffs_failures"} <= names
    assert "checkpoints" not in names
