"""The handoff audit trail: records queued on the data path, written to the store in the background.

Recording must never slow a handoff down or fail it, so :meth:`AuditLog.record` only digests the payloads
(small ones inline, big ones in a worker thread) and appends to a bounded queue; a background task writes
batches every ``flush_interval`` seconds and prunes by count and age. When the queue is full the oldest
unwritten record is dropped and counted (``agent_gateway_audit_dropped_total``) rather than blocking traffic.

A batch the store fails to write goes back to the front of the queue (still bounded by ``queue_size``: what no
longer fits is a real drop, counted like any other) and the writer retries with exponential backoff, from
``flush_interval`` up to :data:`MAX_RETRY_DELAY`, so a store outage shorter than the queue loses nothing.

:func:`timeline` turns a run's records into the story a person needs: the ordered handoffs, the **entry
point** (the first handoff where a violation entered), and the downstream handoffs that consumed it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from gateway.background import stop_task
from gateway.config import AuditSettings
from gateway.outcomes import FAULTY
from gateway.store.base import HandoffRecord, Store, cancel_requested

log = logging.getLogger("agent_gateway.audit")

MAX_RETRY_DELAY = 5.0
"""Seconds between write attempts at most while the store keeps failing."""

INLINE_DIGEST_BYTES = 16 * 1024
"""Bodies smaller than this are hashed on the event loop as they are queued (1 KiB: ~1 µs, cheaper than handing
it to a thread, ~10 µs); larger ones by a worker thread (100 KiB: ~50 µs of hashing that would otherwise stall
the loop; hashlib releases the GIL). Either way the queue never holds a body, only its digest or the
digest's future: a store outage with a full queue would otherwise pin ``queue_size`` bodies in memory."""

Digest = str | None | Future[str]
Queued = tuple[HandoffRecord, Digest, Digest]


class AuditLog:
    def __init__(self, store: Store, settings: AuditSettings, on_drop: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._settings = settings
        self._queue: deque[Queued] = deque()
        self._on_drop = on_drop
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._last_prune = 0.0
        self._hasher: ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def record(self, record: HandoffRecord, request_body: bytes | None, response_body: bytes | None) -> None:
        """Queue a record with its payload digests (see :data:`INLINE_DIGEST_BYTES`), never the payloads."""
        if len(self._queue) >= self._settings.queue_size:
            self._queue.popleft()
            self._on_drop()
        self._queue.append((record, self._digest(request_body), self._digest(response_body)))

    def _digest(self, body: bytes | None) -> Digest:
        if body is None:
            return None
        if len(body) < INLINE_DIGEST_BYTES:
            return hashlib.sha256(body).hexdigest()
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-digest")
        return self._hasher.submit(_sha256, body)

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return len(self._queue)

    async def flush(self) -> None:
        """Write everything queued so far (admin reads call this so a timeline is complete). A batch the store
        refuses is put back (see :meth:`_requeue`) and the store's error raised."""
        async with self._flushing:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 500))]
                try:
                    await self._store.append_handoffs(await asyncio.to_thread(_with_digests, batch))
                except BaseException:  # a store failure, or cancelled mid-write: either way not known written
                    self._requeue(batch)
                    raise
            now = time.time()
            if now - self._last_prune >= self._settings.prune_interval:
                self._last_prune = now
                await self._store.prune_handoffs(
                    keep=self._settings.max_records, older_than=now - self._settings.max_age_seconds
                )

    def _requeue(self, batch: list[Queued]) -> None:
        """Put an unwritten batch back in front of the queue, oldest first; records that no longer fit (the
        queue filled up meanwhile) are the oldest, and are dropped and counted."""
        overflow = max(0, len(self._queue) + len(batch) - self._settings.queue_size)  # never above len(batch)
        for _ in range(overflow):
            self._on_drop()
        self._queue.extendleft(reversed(batch[overflow:]))

    async def _run(self) -> None:
        failures = 0
        while not cancel_requested():  # also when a store driver swallowed the CancelledError (redis-py can)
            interval = self._settings.flush_interval  # doubled per failure in a row, up to MAX_RETRY_DELAY
            await asyncio.sleep(min(max(interval, MAX_RETRY_DELAY), interval * 2 ** min(failures, 16)))
            try:
                await self.flush()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "writing audit records failed (%s); %d waiting, retrying with backoff", exc, self.pending
                    )
                continue
            if failures:
                log.warning("audit records written again after %d failed attempt(s)", failures)
            failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-flusher")

    async def close(self) -> None:
        """Stop the writer and write what is left; records the store cannot take now are lost, and counted."""
        await stop_task(self._task)
        try:
            await self.flush()
        except Exception:
            lost = len(self._queue)
            self._queue.clear()
            for _ in range(lost):
                self._on_drop()
            log.exception("closing with %d audit record(s) the store would not take: dropped", lost)
        if self._hasher is not None:
            self._hasher.shutdown(wait=False)
            self._hasher = None  # a record queued after closing (a straggling request) gets a fresh one


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _resolved(digest: Digest) -> str | None:
    return digest.result() if isinstance(digest, Future) else digest


def _with_digests(batch: list[Queued]) -> list[HandoffRecord]:
    """The records with the SHA-256 of the exact bytes that crossed the gateway (in a worker thread: waiting
    for a big body's digest blocks)."""
    return [
        replace(record, request_sha256=_resolved(request), response_sha256=_resolved(response))
        for record, request, response in batch
    ]


@dataclass(frozen=True)
class Timeline:
    run_id: str
    handoffs: list[HandoffRecord]
    entry_point: HandoffRecord | None
    downstream: list[HandoffRecord]


def _producer(record: HandoffRecord) -> str:
    """Who put the bad content into the pipeline: the agent that answered, or the one that sent."""
    return record.target if record.verdict == "response_invalid" else record.source


def timeline(run_id: str, records: Sequence[HandoffRecord]) -> Timeline:
    """Order a run's handoffs, find where a violation entered and every later handoff that consumed it.

    A later handoff consumed the bad content when its source agent is tainted (the producer, or an agent that
    already received tainted content), or when its request bytes are exactly a tainted response's bytes.
    """
    ordered = sorted(records, key=lambda r: r.started_at)
    entry = next((r for r in ordered if r.verdict in FAULTY), None)
    downstream: list[HandoffRecord] = []
    if entry is not None:
        tainted = {_producer(entry)}
        digests = {entry.response_sha256} - {None}
        for record in ordered[ordered.index(entry) + 1 :]:
            if record.source in tainted or (record.request_sha256 is not None and record.request_sha256 in digests):
                downstream.append(record)
                tainted.add(record.target)
                if record.response_sha256:
                    digests.add(record.response_sha256)
    return Timeline(run_id, ordered, entry, downstream)
