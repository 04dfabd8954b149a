"""The embedded default store: one SQLite file (or ``:memory:``), no service to run.

sqlite3 calls block, so each runs in a worker thread behind one lock; the store is only touched by admin
operations and start-up, never per proxied request, so this costs nothing on the data path.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from gateway.config import RouteSpec
from gateway.store.base import ContractHead, StoredContract

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (name TEXT PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contracts (
    id TEXT PRIMARY KEY, latest_version INTEGER NOT NULL, active_version INTEGER
);
CREATE TABLE IF NOT EXISTS contract_versions (
    id TEXT NOT NULL, version INTEGER NOT NULL, document BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (id, version)
);
"""


class SQLiteStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._conn)

        return await asyncio.to_thread(locked)

    async def list_routes(self) -> list[RouteSpec]:
        rows = await self._run(lambda c: c.execute("SELECT spec FROM routes ORDER BY name").fetchall())
        return [RouteSpec.model_validate_json(row[0]) for row in rows]

    async def put_route(self, route: RouteSpec) -> None:
        spec = route.model_dump_json()
        await self._run(lambda c: c.execute("INSERT OR REPLACE INTO routes VALUES (?, ?)", (route.name, spec)))

    async def delete_route(self, name: str) -> bool:
        cursor = await self._run(lambda c: c.execute("DELETE FROM routes WHERE name = ?", (name,)))
        return cursor.rowcount > 0

    async def add_contract_version(self, contract_id: str, document: Mapping[str, Any]) -> StoredContract:
        created = time.time()
        blob = orjson.dumps(document)

        def insert(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT latest_version FROM contracts WHERE id = ?", (contract_id,)).fetchone()
                version = 1 if row is None else row[0] + 1
                c.execute("INSERT INTO contract_versions VALUES (?, ?, ?, ?)", (contract_id, version, blob, created))
                c.execute(
                    "INSERT INTO contracts (id, latest_version) VALUES (?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET latest_version = excluded.latest_version",
                    (contract_id, version),
                )
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return version

        version = await self._run(insert)
        return StoredContract(contract_id, version, document, created)

    async def get_contract_version(self, contract_id: str, version: int) -> StoredContract | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT document, created_at FROM contract_versions WHERE id = ? AND version = ?",
                (contract_id, version),
            ).fetchone()
        )
        return None if row is None else StoredContract(contract_id, version, orjson.loads(row[0]), row[1])

    async def list_contract_versions(self, contract_id: str) -> list[StoredContract]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT version, document, created_at FROM contract_versions WHERE id = ? ORDER BY version",
                (contract_id,),
            ).fetchall()
        )
        return [StoredContract(contract_id, v, orjson.loads(doc), created) for v, doc, created in rows]

    async def list_contract_heads(self) -> list[ContractHead]:
        rows = await self._run(
            lambda c: c.execute("SELECT id, latest_version, active_version FROM contracts ORDER BY id").fetchall()
        )
        return [ContractHead(*row) for row in rows]

    async def set_active_version(self, contract_id: str, version: int | None) -> None:
        await self._run(
            lambda c: c.execute("UPDATE contracts SET active_version = ? WHERE id = ?", (version, contract_id))
        )

    async def close(self) -> None:
        await self._run(lambda c: c.close())
