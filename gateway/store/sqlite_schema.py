"""The SQLite store's schema, and how a file written by an older gateway is brought up to it.

Sized for a fleet sidecar (a million handoffs a day): every admin query reads an index, not the whole audit.

- ``runs`` holds one summary per run and ``failure_minutes`` failures per minute, route, category and mode, both
  updated in the transactions that append and prune handoffs (``sqlite_audit.py``), so ``GET /runs`` reads a
  page of an index on ``last_at`` and ``/stats/failures`` at most a window's minutes of buckets;
- ``handoffs_time`` lets retention delete the oldest rows in small batches, and ``handoffs_failures`` (partial:
  failures only) counts the part of a window's first minute the buckets cannot split;
- checkpoints live in a file of their own (``<name>.checkpoints<suffix>`` next to the store's file): keyed
  requests write them on the data path, and SQLite lets one connection write to a file at a time, so in the
  main file they waited for audit batches and retention (and for SQLite's busy back-off, up to 100 ms a
  sleep). ``checkpoints_expiry`` lets the background sweep find expired ones without a scan.

New files use ``auto_vacuum=INCREMENTAL`` so pages freed by retention are given back to the file system a few at
a time (``PRAGMA incremental_vacuum``); a file created before that keeps its mode (switching needs a full
``VACUUM``, which rewrites the whole file under an exclusive lock: run ``sqlite3 <file> 'PRAGMA
auto_vacuum=INCREMENTAL; VACUUM'`` while the gateway is stopped if it matters).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
CREATE TABLE IF NOT EXISTS failure_minutes (
    minute INTEGER NOT NULL, route TEXT NOT NULL, category TEXT NOT NULL, mode TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (minute, route, category, mode)
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, item_id TEXT NOT NULL, status TEXT NOT NULL, next_at REAL NOT NULL, owner TEXT,
    delivery BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_item ON outbox (item_id);
CREATE TABLE IF NOT EXISTS breakers (
    name TEXT PRIMARY KEY, at REAL NOT NULL, origin TEXT NOT NULL, record BLOB NOT NULL
);
"""
CHECKPOINT_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY, request_digest TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,
    status INTEGER, headers BLOB, body BLOB, owner TEXT
);
CREATE INDEX IF NOT EXISTS checkpoints_expiry ON checkpoints (expires_at);
"""
CHECKPOINT_COLUMNS = "key, request_digest, state, expires_at, status, headers, body, owner"

BACKFILL_RUNS = """
INSERT OR REPLACE INTO runs (run_id, first_at, last_at, handoffs, failures)
SELECT run_id, MIN(started_at), MAX(started_at), COUNT(*), SUM(category IS NOT NULL) FROM handoffs GROUP BY run_id
"""
BACKFILL_FAILURES = """
INSERT OR REPLACE INTO failure_minutes (minute, route, category, mode, count)
SELECT CAST(started_at / 60 AS INTEGER), route, category, COALESCE(mode, ''), COUNT(*) FROM handoffs
WHERE category IS NOT NULL GROUP BY 1, 2, 3, 4
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
    c.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file only: must precede its first page (and WAL mode)
    if path != ":memory:":
        c.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: commits survive a crash of the process; only an OS crash can lose the last ones.
        c.execute("PRAGMA synchronous=NORMAL")
    return c


def _tables(c: sqlite3.Connection) -> set[str]:
    return {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def create_or_migrate(c: sqlite3.Connection) -> None:
    """Create the schema, or add what an older file lacks: the summaries (backfilled from the handoffs already
    recorded: one grouped pass each, once) and the new indexes."""
    tables = _tables(c)
    c.executescript(SCHEMA)
    if "handoffs" in tables:
        with transaction(c):
            if "runs" not in tables:
                c.execute(BACKFILL_RUNS)
            if "failure_minutes" not in tables:
                c.execute(BACKFILL_FAILURES)


def checkpoints_path(path: str) -> str:
    """``gateway.db`` keeps its checkpoints in ``gateway.checkpoints.db``."""
    file = Path(path)
    return str(file.with_name(f"{file.stem}.checkpoints{file.suffix}"))


def open_checkpoints(main: sqlite3.Connection, path: str) -> sqlite3.Connection:
    """The checkpoints' connection for the store at ``path`` (``main`` itself for ``:memory:``). Checkpoints a
    file from before the split still holds (claims from before claims had owners included) move over, once."""
    if path == ":memory:":
        main.executescript(CHECKPOINT_SCHEMA)
        return main
    c = connect(checkpoints_path(path))
    c.executescript(CHECKPOINT_SCHEMA)
    if "checkpoints" in _tables(main):
        present = {row[1] for row in main.execute("PRAGMA table_info(checkpoints)")}
        columns = ", ".join(n if n in present else "NULL" for n in CHECKPOINT_COLUMNS.split(", "))
        main.execute("ATTACH DATABASE ? AS split", (checkpoints_path(path),))
        try:
            with transaction(main):  # a crash midway leaves them in both: the next start copies again
                main.execute(f"INSERT OR IGNORE INTO split.checkpoints SELECT {columns} FROM main.checkpoints")
                main.execute("DROP TABLE main.checkpoints")
        finally:
            main.execute("DETACH DATABASE split")
    return c


def incremental_vacuum(c: sqlite3.Connection, pages: int) -> bool:
    """Give up to ``pages`` free pages back to the file system; whether free pages remain (``False`` on a
    file without incremental auto-vacuum, where there is nothing this can do)."""
    if c.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return False
    c.executescript(f"PRAGMA incremental_vacuum({int(pages)})")  # frees a page per step: run it to the end
    return bool(c.execute("PRAGMA freelist_count").fetchone()[0])
