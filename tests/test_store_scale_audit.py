"""The audit queue holds digests, never payload bodies (issue 12, issue 11): a store outage with a full queue
would otherwise pin ``queue_size`` bodies in memory."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc

from gateway.config import AuditSettings
from gateway.observability.audit import INLINE_DIGEST_BYTES, AuditLog
from gateway.store.base import HandoffRecord
from gateway.store.sqlite import SQLiteStore


def record(n: int) -> HandoffRecord:
    return HandoffRecord(
        id=f"h{n}", run_id="r", step="s", attempt=1, source="a", target="b", method="POST", path="/",
        status=200, verdict="valid", trace_id="t", started_at=time.time() + n, duration_ms=1.0,
    )  # fmt: skip


async def test_queued_records_hold_no_bodies() -> None:
    store = SQLiteStore(":memory:")
    audit = AuditLog(store, AuditSettings(queue_size=1000))
    size, count = INLINE_DIGEST_BYTES // 2, 400  # 2 x 400 x 8 KiB = 6.4 MiB of bodies in all
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(count):
            audit.record(record(n), os.urandom(size), os.urandom(size))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        await audit.close()
        await store.close()
    assert audit.pending == 0
    assert held < 2 * count * size / 4, f"{held:,} bytes held for {count} queued records"


async def test_digests_of_small_and_big_bodies_are_those_of_the_bytes() -> None:
    store = SQLiteStore(":memory:")
    audit = AuditLog(store, AuditSettings())
    small, big = b'{"task": "t"}', os.urandom(4 * INLINE_DIGEST_BYTES)  # one inline, one by the worker
    try:
        audit.record(record(1), small, big)
        audit.record(record(2), None, small)
        await audit.flush()  # (records of now: the retention pass after the write keeps them)
        first, second = await store.run_handoffs("r")
    finally:
        await audit.close()
        await store.close()
    assert first.request_sha256 == hashlib.sha256(small).hexdigest()
    assert first.response_sha256 == hashlib.sha256(big).hexdigest()
    assert (second.request_sha256, second.response_sha256) == (None, hashlib.sha256(small).hexdigest())
