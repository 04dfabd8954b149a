"""The SQLite store's schema, and how a file written by an older gateway is brought up to it.

Sized for a fleet sidecar (a million handoffs a day): every admin query reads an index, not the whole audit.

- ``runs`` holds one summary per run, updated in the same transaction that appends its handoffs, so
  ``GET /runs`` reads a page of an index on ``last_at`` instead of grouping every handoff;
- ``handoffs_time`` lets retention delete the oldest rows in small batches, and ``handoffs_failures`` (partial:
  failures only, covering the grouped columns) makes ``/stats/failures`` read only the window's failures;
- ``checkpoints_expiry`` lets the background sweep find expired checkpoints without a scan.

New files use ``auto_vacuum=INCREMENTAL`` so pages freed by retention are given back to the file system a few at
a time (``PRAGMA incremental_vacuum``); a file created before that keeps its mode (switching needs a full
``VACUUM``, which rewrites the whole file under an exclusive lock: run ``sqlite3 <file> 'PRAGMA
auto_vacuum=INCREMENTAL; VACUUM'`` while the gateway is stopped if it matters).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (name TEXT PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, id TEXT NOT NULL, latest_version INTEGER NOT NULL, active_version INTEGER,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS document_versions (
    kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, document BLOB NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (kind, id, version)
);
CREATE TABLE IF NOT EXISTS handoffs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, run_id TEXT NOT NULL, started_at REAL NOT NULL,
    route TEXT NOT NULL, verdict TEXT NOT NULL, category TEXT, mode TEXT, record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS handoffs_run ON handoffs (run_id, started_at);
CREATE INDEX IF NOT EXISTS handoffs_time ON handoffs (started_at);
CREATE INDEX IF NOT EXISTS handoffs_failures ON handoffs (started_at, route, category, mode)
    WHERE category IS NOT NULL;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, first_at REAL NOT NULL, last_at REAL NOT NULL, handoffs INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_last ON runs (last_at);
CREATE TABLE IF NOT EXISTS artifacts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, artifact TEXT NOT NULL,
    version REAL, digest TEXT, produced_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id, artifact);
CREATE INDEX IF NOT EXISTS artifacts_time ON artifacts (produced_at);
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, status TEXT NOT NULL, route TEXT NOT NULL, item BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS escalations_status ON escalations (status, created_at);
CREATE INDEX IF NOT EXISTS escalations_time ON escalations (created_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY, request_digest TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,
    status INTEGER, headers BLOB, body BLOB, owner TEXT
);
CREATE INDEX IF NOT EXISTS checkpoints_expiry ON checkpoints (expires_at);
"""

BACKFILL_RUNS = """
INSERT OR REPLACE INTO runs (run_id, first_at, last_at, handoffs, failures)
SELECT run_id, MIN(started_at), MAX(started_at), COUNT(*), SUM(category IS NOT NULL) FROM handoffs GROUP BY run_id
"""


@contextmanager
def transaction(c: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: taken before reading, so read-then-write is atomic)."""
    c.execute("BEGIN IMMEDIATE")
    try:
        yield c
    except BaseException:
        c.execute("ROLLBACK")
        raise
    c.execute("COMMIT")


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL for files so readers never block the
    writer; ``timeout`` is how long a writer waits for another connection's write transaction to end."""
    c = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    if path != ":memory:":
        c.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: commits survive a crash of the process; only an OS crash can lose the last ones.
        c.execute("PRAGMA synchronous=NORMAL")
    return c


def _tables(c: sqlite3.Connection) -> set[str]:
    return {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def create_or_migrate(c: sqlite3.Connection) -> None:
    """Create the schema, or add what an older file lacks: the claim ``owner`` column, the run summaries
    (backfilled from the handoffs already recorded: one grouped pass, once) and the new indexes."""
    tables = _tables(c)
    if not tables:
        c.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect before the first table exists
    c.executescript(SCHEMA)
    columns = {row[1] for row in c.execute("PRAGMA table_info(checkpoints)")}
    if "owner" not in columns:
        c.execute("ALTER TABLE checkpoints ADD COLUMN owner TEXT")
    if "handoffs" in tables and "runs" not in tables:
        with transaction(c):
            c.execute(BACKFILL_RUNS)


def incremental_vacuum(c: sqlite3.Connection, pages: int) -> bool:
    """Give up to ``pages`` free pages back to the file system; whether free pages remain (``False`` on a
    file without incremental auto-vacuum, where there is nothing this can do)."""
    if c.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return False
    c.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()  # a pragma that runs as it is stepped
    return bool(c.execute("PRAGMA freelist_count").fetchone()[0])
