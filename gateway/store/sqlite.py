"""The embedded default store: one SQLite file (or ``:memory:``), no service to run.

sqlite3 calls block, so each runs in a worker thread behind a lock; the store is only touched by admin
operations, start-up and the audit log's background flusher, never awaited per proxied request (except for
contracts that declare stale-context tracking, and keyed requests' checkpoints, which have a connection of their
own), so this costs little on the data path. Every ``sqlite3.Error`` (locked, disk full, I/O error) surfaces as
:class:`gateway.errors.StoreUnavailable`. The schema and its migration are in ``sqlite_schema.py``, the audit
trail's SQL (run summaries, batched retention) in ``sqlite_audit.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from gateway.config import RouteSpec
from gateway.contracts.checked import content_digest
from gateway.store.base import (
    PRUNE_BATCH,
    ArtifactVersion,
    BreakerRecord,
    CheckpointRecord,
    DocumentHead,
    EscalationItem,
    FailureCount,
    HandoffRecord,
    RunSummary,
    StoredDocument,
    WebhookDelivery,
    translate_errors,
)
from gateway.store.codec import decode_item, decode_record, encode_item
from gateway.store.sqlite_audit import append, failure_counts, prune_artifacts_batch, prune_batch, prune_cutoff
from gateway.store.sqlite_fleet import (
    breaker_records,
    claim,
    delivery_of,
    finish,
    insert_delivery,
    put_breaker,
    release,
)
from gateway.store.sqlite_schema import (
    CHECKPOINT_COLUMNS,
    checkpoints_path,
    connect,
    create_or_migrate,
    incremental_vacuum,
    open_checkpoints,
    transaction,
)
from gateway.store.sqlite_upkeep import Upkeep

T = TypeVar("T")

VACUUM_STEP = 128
"""Pages (4 KiB each) handed back to the file system per hold of the lock after retention."""
SWEEP_INTERVAL = 60.0
"""Seconds between background sweeps of expired checkpoints."""


def _insert_version(
    c: sqlite3.Connection, kind: str, doc_id: str, blob: bytes, created: float, *, activate: bool
) -> int:
    """Store ``blob`` as the next version of ``doc_id`` (in force too with ``activate``); its number. The caller
    holds a write transaction, so reading the newest number and writing the next one cannot interleave."""
    row = c.execute("SELECT latest_version FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)).fetchone()
    version = 1 if row is None else int(row[0]) + 1
    c.execute("INSERT INTO document_versions VALUES (?, ?, ?, ?, ?)", (kind, doc_id, version, blob, created))
    c.execute(
        "INSERT INTO documents (kind, id, latest_version, active_version) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(kind, id) DO UPDATE SET latest_version = excluded.latest_version,"
        " active_version = COALESCE(excluded.active_version, documents.active_version)",
        (kind, doc_id, version, version if activate else None),
    )
    return version


@translate_errors(sqlite3.Error)
class SQLiteStore:
    """Checkpoints (awaited by keyed requests on the data path) have a file, connection and lock of their own
    (see ``sqlite_schema.py``), so a keyed request never waits for audit batches, retention or admin work;
    ``:memory:`` is one database per connection, so there everything shares the one connection.

    A daemon thread (``sqlite_upkeep.py``) checkpoints the WAL outside the locks and deletes expired
    checkpoints every ``sweep_interval`` seconds (by ``clock``), in batches of
    :data:`~gateway.store.base.PRUNE_BATCH`: a stored answer is otherwise only replaced when its key is
    claimed again, and a fleet's unique keys would grow the file without bound."""

    def __init__(
        self, path: str = ":memory:", *, sweep_interval: float = SWEEP_INTERVAL, clock: Callable[[], float] = time.time
    ) -> None:
        self.failures: Counter[str] = Counter()
        self._conn = connect(path)
        self._lock = threading.Lock()
        create_or_migrate(self._conn)
        self._ckpt_conn = open_checkpoints(self._conn, path)
        self._ckpt_lock = self._lock if self._ckpt_conn is self._conn else threading.Lock()
        self._clock = clock
        self._closing = threading.Event()
        wal_files = [] if path == ":memory:" else [path, checkpoints_path(path)]
        for c in {self._conn, self._ckpt_conn} if wal_files else ():
            c.execute("PRAGMA wal_autocheckpoint=0")  # the upkeep thread checkpoints, outside the locks
        self._upkeep = Upkeep(
            wal_files, self.sweep_checkpoints, sweep_interval=sweep_interval, stopping=self._closing,
            failures=self.failures,
        )  # fmt: skip
        self._upkeep.start()

    def sweep_checkpoints(self) -> int:
        """Delete every checkpoint expired by now, a bounded batch per transaction; how many (blocking)."""
        swept = 0
        while not self._closing.is_set():
            with self._ckpt_lock, transaction(self._ckpt_conn) as c:
                batch = c.execute(
                    "DELETE FROM checkpoints WHERE key IN"
                    " (SELECT key FROM checkpoints WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
                    (self._clock(), PRUNE_BATCH),
                ).rowcount
            swept += batch
            if batch < PRUNE_BATCH:
                break
        return swept

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._conn)

        return await asyncio.to_thread(locked)

    async def _checkpoint(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._ckpt_lock:
                return fn(self._ckpt_conn)

        return await asyncio.to_thread(locked)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._run(lambda c: c.execute(sql, params).fetchall())

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._run(lambda c: c.execute(sql, params).fetchone())

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return await self._run(lambda c: c.execute(sql, params).rowcount)

    async def _checkpoint_write(self, sql: str, params: Sequence[Any]) -> int:
        return await self._checkpoint(lambda c: c.execute(sql, params).rowcount)

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
            with transaction(c):
                return _insert_version(c, kind, doc_id, blob, created, activate=False)

        return StoredDocument(doc_id, await self._run(insert), document, created)

    async def add_active_version(self, kind: str, doc_id: str, document: Mapping[str, Any]) -> StoredDocument:
        """The check and the write share one ``BEGIN IMMEDIATE`` transaction, which also excludes other
        processes on the file: of two gateways storing the same document, the second finds it in force."""
        created = time.time()
        blob = orjson.dumps(document)
        digest = content_digest(document)

        def put(c: sqlite3.Connection) -> StoredDocument:
            with transaction(c):
                row = c.execute(
                    "SELECT d.active_version, v.document, v.created_at FROM documents d JOIN document_versions v"
                    " ON v.kind = d.kind AND v.id = d.id AND v.version = d.active_version"
                    " WHERE d.kind = ? AND d.id = ?",
                    (kind, doc_id),
                ).fetchone()
                held = None if row is None else orjson.loads(row[1])
                if held is not None and digest is not None and content_digest(held) == digest:
                    return StoredDocument(doc_id, row[0], held, row[2])
                version = _insert_version(c, kind, doc_id, blob, created, activate=True)
            return StoredDocument(doc_id, version, document, created)

        return await self._run(put)

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
        await self._run(lambda c: append(c, records))

    async def run_handoffs(self, run_id: str) -> list[HandoffRecord]:
        rows = await self._all("SELECT record FROM handoffs WHERE run_id = ? ORDER BY started_at, seq", (run_id,))
        return [decode_record(row[0]) for row in rows]

    async def list_runs(self, limit: int) -> list[RunSummary]:
        rows = await self._all(
            "SELECT run_id, first_at, last_at, handoffs, failures FROM runs ORDER BY last_at DESC LIMIT ?", (limit,)
        )
        return [RunSummary(*row) for row in rows]

    async def failure_counts(self, since: float) -> list[FailureCount]:
        return await self._run(lambda c: failure_counts(c, since))

    async def prune_handoffs(self, *, keep: int, older_than: float) -> int:
        """One transaction (and one hold of the lock) per batch, then the freed pages back to the file system
        in steps of the same size, so other work interleaves however much there is to delete."""
        cutoff = await self._run(lambda c: prune_cutoff(c, keep))
        removed = 0
        while batch := await self._run(lambda c: prune_batch(c, up_to_seq=cutoff, older_than=older_than)):
            removed += batch
        while await self._run(lambda c: prune_artifacts_batch(c, older_than)) == PRUNE_BATCH:
            pass
        while await self._run(lambda c: incremental_vacuum(c, VACUUM_STEP)):
            pass
        return removed

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

    async def add_escalation(self, item: EscalationItem, webhook: WebhookDelivery | None = None) -> None:
        def insert(c: sqlite3.Connection) -> None:
            with transaction(c):
                c.execute(
                    "INSERT INTO escalations VALUES (?, ?, ?, ?, ?)",
                    (item.id, item.created_at, item.status, item.route, encode_item(item)),
                )
                if webhook is not None:
                    insert_delivery(c, webhook)

        await self._run(insert)

    async def get_escalation(self, item_id: str) -> EscalationItem | None:
        row = await self._one("SELECT item FROM escalations WHERE id = ?", (item_id,))
        return None if row is None else decode_item(row[0])

    async def list_escalations(self, *, status: str | None, route: str | None, limit: int) -> list[EscalationItem]:
        # Only the filters given, spelled out: "(? IS NULL OR status = ?)" keeps SQLite from using an index,
        # and a long dead-letter queue was then sorted whole for every page.
        filters = [(column, value) for column, value in (("status", status), ("route", route)) if value is not None]
        where = " AND ".join(f"{column} = ?" for column, _ in filters) or "1"
        rows = await self._all(
            f"SELECT item FROM escalations WHERE {where} ORDER BY created_at DESC LIMIT ?",
            (*(value for _, value in filters), limit),
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
            with transaction(c):
                row = c.execute(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE key = ?", (key,)).fetchone()
                if row is not None and row[3] > now:
                    headers = orjson.loads(row[5]) if row[5] else None
                    return CheckpointRecord(row[0], row[1], row[2], row[3], row[4], headers, row[6], row[7])
                c.execute(
                    "INSERT OR REPLACE INTO checkpoints (key, request_digest, state, expires_at, owner)"
                    " VALUES (?, ?, 'in_flight', ?, ?)",
                    (key, request_digest, now + ttl, owner),
                )
                return None

        return await self._checkpoint(claim)

    async def renew_checkpoint(self, key: str, owner: str, *, expires_at: float) -> bool:
        return (
            await self._checkpoint_write(
                "UPDATE checkpoints SET expires_at = ? WHERE key = ? AND state = 'in_flight' AND owner = ?",
                (expires_at, key, owner),
            )
            > 0
        )

    async def complete_checkpoint(
        self, key: str, request_digest: str, *, status: int, headers: Mapping[str, str], body: bytes, expires_at: float
    ) -> None:
        await self._checkpoint_write(
            f"INSERT OR REPLACE INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?, ?, 'done', ?, ?, ?, ?, NULL)",
            (key, request_digest, expires_at, status, orjson.dumps(dict(headers)), body),
        )

    async def release_checkpoint(self, key: str, owner: str | None = None) -> None:
        await self._checkpoint_write(
            "DELETE FROM checkpoints WHERE key = ? AND state = 'in_flight' AND (? IS NULL OR owner = ?)",
            (key, owner, owner),
        )

    async def claim_webhooks(self, owner: str, *, now: float, lease: float, limit: int) -> list[WebhookDelivery]:
        return await self._run(lambda c: claim(c, owner, now, lease, limit))

    async def finish_webhook(self, delivery: WebhookDelivery, owner: str) -> bool:
        return await self._run(lambda c: finish(c, delivery, owner))

    async def release_webhooks(self, owner: str, *, now: float) -> int:
        return await self._run(lambda c: release(c, owner, now))

    async def webhook_delivery(self, item_id: str) -> WebhookDelivery | None:
        return await self._run(lambda c: delivery_of(c, item_id))

    async def put_breaker(self, record: BreakerRecord) -> None:
        await self._run(lambda c: put_breaker(c, record))

    async def breaker_records(self) -> list[BreakerRecord]:
        return await self._run(breaker_records)

    async def close(self) -> None:
        self._closing.set()
        await asyncio.to_thread(self._upkeep.join)
        if self._ckpt_conn is not self._conn:
            await self._checkpoint(lambda c: c.close())
        await self._run(lambda c: c.close())
