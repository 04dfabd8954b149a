"""The embedded default store: one SQLite file (or ``:memory:``), no service to run.

sqlite3 calls block, so each runs in a worker thread behind one lock; the store is only touched by admin
operations, start-up and the audit log's background flusher, never awaited per proxied request (except for
contracts that declare stale-context tracking, and keyed requests' checkpoints), so this costs little on the
data path. Every ``sqlite3.Error`` (locked, disk full, I/O error) surfaces as
:class:`gateway.errors.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson

from gateway.config import RouteSpec
from gateway.store.base import (
    ArtifactVersion,
    CheckpointRecord,
    DocumentHead,
    EscalationItem,
    FailureCount,
    HandoffRecord,
    RunSummary,
    StoredDocument,
    translate_errors,
)
from gateway.store.codec import decode_item, decode_record, encode_item, encode_record

T = TypeVar("T")

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS artifacts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, artifact TEXT NOT NULL,
    version REAL, digest TEXT, produced_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id, artifact);
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, status TEXT NOT NULL, route TEXT NOT NULL, item BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS escalations_status ON escalations (status, created_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY, request_digest TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,
    status INTEGER, headers BLOB, body BLOB, owner TEXT
);
"""
_CHECKPOINT_COLUMNS = "key, request_digest, state, expires_at, status, headers, body, owner"


def _migrate(c: sqlite3.Connection) -> None:
    """Files written before claims had owners lack the column; add it (existing claims have no owner)."""
    columns = {row[1] for row in c.execute("PRAGMA table_info(checkpoints)")}
    if "owner" not in columns:
        c.execute("ALTER TABLE checkpoints ADD COLUMN owner TEXT")


@contextmanager
def _transaction(c: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: taken before reading, so read-then-write is atomic)."""
    c.execute("BEGIN IMMEDIATE")
    try:
        yield c
    except BaseException:
        c.execute("ROLLBACK")
        raise
    c.execute("COMMIT")


@translate_errors(sqlite3.Error)
class SQLiteStore:
    def __init__(self, path: str = ":memory:") -> None:
        self.failures: Counter[str] = Counter()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: commits survive a crash of the process; only an OS crash can lose the last ones.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        _migrate(self._conn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._conn)

        return await asyncio.to_thread(locked)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._run(lambda c: c.execute(sql, params).fetchall())

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._run(lambda c: c.execute(sql, params).fetchone())

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return await self._run(lambda c: c.execute(sql, params).rowcount)

    async def list_routes(self) -> list[RouteSpec]:
        rows = await self._all("SELECT spec FROM routes ORDER BY name")
        return [RouteSpec.model_validate_json(row[0]) for row in rows]

    async def put_route(self, route: RouteSpec) -> None:
        await self._write("INSERT OR REPLACE INTO routes VALUES (?, ?)", (route.name, route.model_dump_json()))

    async def delete_route(self, name: str) -> bool:
        return await self._write("DELETE FROM routes WHERE name = ?", (name,)) > 0

    async def add_version(self, kind: str, doc_id: str, document: Mapping[str, Any]) -> StoredDocument:
        created = time.time()
        blob = orjson.dumps(document)

        def insert(c: sqlite3.Connection) -> int:
            with _transaction(c):
                row = c.execute(
                    "SELECT latest_version FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)
                ).fetchone()
                version = 1 if row is None else row[0] + 1
                c.execute(
                    "INSERT INTO document_versions VALUES (?, ?, ?, ?, ?)", (kind, doc_id, version, blob, created)
                )
                c.execute(
                    "INSERT INTO documents (kind, id, latest_version) VALUES (?, ?, ?)"
                    " ON CONFLICT(kind, id) DO UPDATE SET latest_version = excluded.latest_version",
                    (kind, doc_id, version),
                )
            return version

        version = await self._run(insert)
        return StoredDocument(doc_id, version, document, created)

    async def get_version(self, kind: str, doc_id: str, version: int) -> StoredDocument | None:
        row = await self._one(
            "SELECT document, created_at FROM document_versions WHERE kind = ? AND id = ? AND version = ?",
            (kind, doc_id, version),
        )
        return None if row is None else StoredDocument(doc_id, version, orjson.loads(row[0]), row[1])

    async def list_versions(self, kind: str, doc_id: str) -> list[StoredDocument]:
        rows = await self._all(
            "SELECT version, document, created_at FROM document_versions WHERE kind = ? AND id = ? ORDER BY version",
            (kind, doc_id),
        )
        return [StoredDocument(doc_id, v, orjson.loads(doc), created) for v, doc, created in rows]

    async def list_heads(self, kind: str) -> list[DocumentHead]:
        rows = await self._all(
            "SELECT id, latest_version, active_version FROM documents WHERE kind = ? ORDER BY id", (kind,)
        )
        return [DocumentHead(*row) for row in rows]

    async def set_active(self, kind: str, doc_id: str, version: int | None) -> None:
        await self._write("UPDATE documents SET active_version = ? WHERE kind = ? AND id = ?", (version, kind, doc_id))

    async def active_documents(self, kind: str) -> list[StoredDocument]:
        rows = await self._all(
            "SELECT d.id, d.active_version, v.document, v.created_at FROM documents d JOIN document_versions v"
            " ON v.kind = d.kind AND v.id = d.id AND v.version = d.active_version WHERE d.kind = ? ORDER BY d.id",
            (kind,),
        )
        return [StoredDocument(doc_id, version, orjson.loads(doc), created) for doc_id, version, doc, created in rows]

    async def append_handoffs(self, records: Sequence[HandoffRecord]) -> None:
        def insert(c: sqlite3.Connection) -> None:
            rows = [
                (r.id, r.run_id, r.started_at, r.target, r.verdict, r.category, r.failure_mode, encode_record(r))
                for r in records
            ]
            with _transaction(c):  # one transaction for the whole batch, not one per row
                c.executemany(
                    "INSERT INTO handoffs (id, run_id, started_at, route, verdict, category, mode, record)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

        await self._run(insert)

    async def run_handoffs(self, run_id: str) -> list[HandoffRecord]:
        rows = await self._all("SELECT record FROM handoffs WHERE run_id = ? ORDER BY started_at, seq", (run_id,))
        return [decode_record(row[0]) for row in rows]

    async def list_runs(self, limit: int) -> list[RunSummary]:
        rows = await self._all(
            "SELECT run_id, MIN(started_at), MAX(started_at), COUNT(*), SUM(category IS NOT NULL)"
            " FROM handoffs GROUP BY run_id ORDER BY MAX(started_at) DESC LIMIT ?",
            (limit,),
        )
        return [RunSummary(*row) for row in rows]

    async def failure_counts(self, since: float) -> list[FailureCount]:
        rows = await self._all(
            "SELECT route, category, mode, COUNT(*) FROM handoffs WHERE category IS NOT NULL"
            " AND started_at >= ? GROUP BY route, category, mode ORDER BY route, category, mode",
            (since,),
        )
        return [FailureCount(*row) for row in rows]

    async def prune_handoffs(self, *, keep: int, older_than: float) -> int:
        def prune(c: sqlite3.Connection) -> int:
            with _transaction(c):
                removed = c.execute("DELETE FROM handoffs WHERE started_at < ?", (older_than,)).rowcount
                removed += c.execute(
                    "DELETE FROM handoffs WHERE seq <= (SELECT seq FROM handoffs ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (keep,),
                ).rowcount
                c.execute("DELETE FROM artifacts WHERE produced_at < ?", (older_than,))
            return int(removed)

        return await self._run(prune)

    async def add_artifact_version(self, version: ArtifactVersion) -> None:
        await self._write(
            "INSERT INTO artifacts (run_id, artifact, version, digest, produced_at) VALUES (?, ?, ?, ?, ?)",
            (version.run_id, version.artifact, version.version, version.digest, version.produced_at),
        )

    async def artifact_versions(self, run_id: str, artifact: str) -> list[ArtifactVersion]:
        rows = await self._all(
            "SELECT run_id, artifact, version, digest, produced_at FROM artifacts"
            " WHERE run_id = ? AND artifact = ? ORDER BY seq",
            (run_id, artifact),
        )
        return [ArtifactVersion(*row) for row in rows]

    async def add_escalation(self, item: EscalationItem) -> None:
        await self._write(
            "INSERT INTO escalations VALUES (?, ?, ?, ?, ?)",
            (item.id, item.created_at, item.status, item.route, encode_item(item)),
        )

    async def get_escalation(self, item_id: str) -> EscalationItem | None:
        row = await self._one("SELECT item FROM escalations WHERE id = ?", (item_id,))
        return None if row is None else decode_item(row[0])

    async def list_escalations(self, *, status: str | None, route: str | None, limit: int) -> list[EscalationItem]:
        rows = await self._all(
            "SELECT item FROM escalations WHERE (? IS NULL OR status = ?) AND (? IS NULL OR route = ?)"
            " ORDER BY created_at DESC LIMIT ?",
            (status, status, route, route, limit),
        )
        return [decode_item(row[0]) for row in rows]

    async def replace_escalation(self, item: EscalationItem) -> None:
        await self._write(
            "UPDATE escalations SET status = ?, item = ? WHERE id = ?", (item.status, encode_item(item), item.id)
        )

    async def count_escalations(self, status: str) -> int:
        row = await self._one("SELECT COUNT(*) FROM escalations WHERE status = ?", (status,))
        return int(row[0])

    async def claim_checkpoint(
        self, key: str, request_digest: str, *, now: float, ttl: float, owner: str | None = None
    ) -> CheckpointRecord | None:
        def claim(c: sqlite3.Connection) -> CheckpointRecord | None:
            with _transaction(c):
                row = c.execute(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE key = ?", (key,)).fetchone()
                if row is not None and row[3] > now:
                    headers = orjson.loads(row[5]) if row[5] else None
                    return CheckpointRecord(row[0], row[1], row[2], row[3], row[4], headers, row[6], row[7])
                c.execute(
                    "INSERT OR REPLACE INTO checkpoints (key, request_digest, state, expires_at, owner)"
                    " VALUES (?, ?, 'in_flight', ?, ?)",
                    (key, request_digest, now + ttl, owner),
                )
                return None

        return await self._run(claim)

    async def renew_checkpoint(self, key: str, owner: str, *, expires_at: float) -> bool:
        return (
            await self._write(
                "UPDATE checkpoints SET expires_at = ? WHERE key = ? AND state = 'in_flight' AND owner = ?",
                (expires_at, key, owner),
            )
            > 0
        )

    async def complete_checkpoint(
        self, key: str, request_digest: str, *, status: int, headers: Mapping[str, str], body: bytes, expires_at: float
    ) -> None:
        await self._write(
            f"INSERT OR REPLACE INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, 'done', ?, ?, ?, ?, NULL)",
            (key, request_digest, expires_at, status, orjson.dumps(dict(headers)), body),
        )

    async def release_checkpoint(self, key: str, owner: str | None = None) -> None:
        await self._write(
            "DELETE FROM checkpoints WHERE key = ? AND state = 'in_flight' AND (? IS NULL OR owner = ?)",
            (key, owner, owner),
        )

    async def close(self) -> None:
        await self._run(lambda c: c.close())
