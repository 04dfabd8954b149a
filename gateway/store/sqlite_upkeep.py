"""The SQLite store's background thread: WAL checkpoints off the store's locks, and the expired-checkpoint sweep.

SQLite's automatic WAL checkpoint runs inside whichever commit crosses 1,000 pages, and copying those pages into
the database file (with its fsync) then happens while that connection's caller holds the store's lock: measured,
it turned a 3 ms retention batch into 20-50 ms. The store's connections switch it off and this thread runs a
``PASSIVE`` checkpoint every :data:`WAL_INTERVAL` seconds on a connection of its own, which never blocks a
writer or a reader (it copies what no reader still needs, and the next pass copies the rest).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

log = logging.getLogger("agent_gateway.store")

WAL_INTERVAL = 1.0
"""Seconds between WAL checkpoints: at most about a second of writes waits in the WAL."""


class Upkeep:
    def __init__(
        self,
        files: Sequence[str],
        sweep: Callable[[], int],
        *,
        sweep_interval: float,
        stopping: threading.Event,
        failures: Counter[str],
    ) -> None:
        self._files = files
        self._sweep = sweep
        self._sweep_interval = sweep_interval
        self._stopping = stopping
        self._failures = failures
        self._thread = threading.Thread(target=self._loop, name="sqlite-upkeep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to end (after ``stopping`` is set); blocking."""
        self._thread.join()

    def _loop(self) -> None:
        connections = [sqlite3.connect(file, isolation_level=None) for file in self._files]
        next_sweep = time.monotonic() + self._sweep_interval
        try:
            while not self._stopping.wait(min(WAL_INTERVAL, self._sweep_interval)):
                self._attempt("wal_checkpoint", lambda: _checkpoint(connections))
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._sweep_interval
                    self._attempt("sweep_checkpoints", self._sweep)
        finally:
            for c in connections:
                c.close()

    def _attempt(self, operation: str, work: Callable[[], object]) -> None:
        try:
            work()
        except sqlite3.Error as exc:  # a busy or full disk: the next round tries again
            self._failures[operation] += 1
            log.warning("store upkeep %s failed: %s", operation, exc)


def _checkpoint(connections: Sequence[sqlite3.Connection]) -> None:
    for c in connections:
        c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
