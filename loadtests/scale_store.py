"""The store at fleet volume (issue 12): audit queries, retention under traffic, and the audit's cost per record.

    python loadtests/scale_store.py            # 10k, 100k and 1M handoffs
    python loadtests/scale_store.py --quick    # 10k and 100k handoffs (nothing extrapolated to 1M)

For each N, a fresh SQLite file gets N synthetic handoffs through the store's own bulk path
(``append_handoffs`` in batches of 10,000: seconds for 1M). They look like a fleet at a million handoffs a day:
one every 86.4 ms ending now, runs of 8 handoffs, one in 20 a failure (2 routes x 3 categories). Then:

- **queries**: ``list_runs(50)`` (``GET /runs``) and ``failure_counts(now - 1 h)`` (``/stats/failures``, default
  window), median of 25 calls each, through the store as the admin API calls it;
- **retention**: one ``prune_handoffs`` pass deleting half the records while keyed requests (checkpoint claim +
  completion, as the data plane makes them) run back to back: the pass's duration, the longest single hold of the
  store's main lock and of the checkpoint lock (an instrumented lock), and the keyed requests' latency;
- **size**: bytes per record on disk (indexes and run summaries included), hence what ``audit.max_records`` keeps;
- **sweep**: 20,000 expired checkpoints deleted by the background sweep's code path, and its longest lock hold.

Then the audit's own cost: event-loop CPU of digesting a 1 KiB and a 100 KiB body at enqueue (inline vs handing it
to a worker thread), and CPU per record of ``AuditLog.record`` (enqueue) and of the batched write (``flush``).
The last table compares growth ratios with the targets: ``GET /runs`` and ``/stats/failures`` at the largest N
within 2x their cost at 10k, and no prune batch holding the lock more than 50 ms. Timings, not assertions: this
is a measurement, run by hand; the tests prove behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from scale import print_table  # noqa: E402

from gateway.config import AuditSettings  # noqa: E402
from gateway.observability.audit import AuditLog  # noqa: E402
from gateway.store.base import HandoffRecord  # noqa: E402
from gateway.store.sqlite import SQLiteStore  # noqa: E402

RATE = 1_000_000 / 86_400
"""Handoffs per second at a million a day."""
RUN_LENGTH = 8
FAILURE_EVERY = 20
CATEGORIES = ("specification", "inter-agent misalignment", "task verification")
TARGETS = {"growth": 2.0, "lock_ms": 50.0}


class TimedLock:
    """A ``threading.Lock`` that remembers its longest hold (seconds): swapped in for a store's lock. ``longest``
    is wall time (what a waiter feels, inflated when the machine is busy and the holder is preempted),
    ``longest_cpu`` the holder's own CPU time (the work done under the lock, whatever the machine's load)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = self._since_cpu = 0.0
        self.longest = self.longest_cpu = 0.0

    def __enter__(self) -> None:
        self._lock.acquire()
        self._since, self._since_cpu = time.perf_counter(), time.thread_time()

    def __exit__(self, *_: object) -> None:
        self.longest = max(self.longest, time.perf_counter() - self._since)
        self.longest_cpu = max(self.longest_cpu, time.thread_time() - self._since_cpu)
        self._lock.release()

    def reset(self) -> None:
        self.longest = self.longest_cpu = 0.0


def synthetic(i: int, now: float, n: int) -> HandoffRecord:
    failed = i % FAILURE_EVERY == 0
    return HandoffRecord(
        id=f"{i:016x}", run_id=f"run-{i // RUN_LENGTH}", step=f"step-{i % RUN_LENGTH}", attempt=1,
        source="planner", target=f"agent-{i % 2}", method="POST", path="/tasks", status=502 if failed else 200,
        verdict="response_invalid" if failed else "valid", trace_id=f"{i:032x}", started_at=now - (n - i) / RATE,
        duration_ms=12.5, upstream_ms=11.0, contract="fleet.tasks", contract_version=3,
        violations=({"pointer": "/items/0/score", "keyword": "maximum", "message": "2 > 1"},) if failed else (),
        violation_count=int(failed), category=CATEGORIES[i % 3] if failed else None,
        failure_mode="information_withholding" if failed else None, request_bytes=1024, response_bytes=1024,
        request_sha256=hashlib.sha256(b"%d" % i).hexdigest(), response_sha256=hashlib.sha256(b"r%d" % i).hexdigest(),
    )  # fmt: skip


async def fill(store: SQLiteStore, n: int, now: float) -> float:
    """N synthetic handoffs through ``append_handoffs`` in batches of 10,000; seconds it took."""
    started = time.perf_counter()
    for first in range(0, n, 10_000):
        await store.append_handoffs([synthetic(i, now, n) for i in range(first, min(n, first + 10_000))])
    return time.perf_counter() - started


async def median_ms(call: Callable[[], Awaitable[Any]], repeat: int = 25) -> float:
    await call()  # warm the page cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def keyed_traffic(store: SQLiteStore, stop: asyncio.Event, latencies: list[float]) -> None:
    """Keyed requests back to back: claim a new key, then store its answer (what a checkpointed call does)."""
    n = 0
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        now = time.time()
        await store.claim_checkpoint(f"k{n}", "digest", now=now, ttl=30, owner="load")
        await store.complete_checkpoint(f"k{n}", "digest", status=200, headers={}, body=b"{}", expires_at=now + 60)
        latencies.append(time.perf_counter() - started)


async def prune_under_traffic(store: SQLiteStore, n: int) -> dict[str, float]:
    main, checkpoints = TimedLock(), TimedLock()
    store._lock, store._ckpt_lock = main, checkpoints  # type: ignore[assignment]  # instrument, nothing else
    stop, latencies = asyncio.Event(), []
    traffic = asyncio.create_task(keyed_traffic(store, stop, latencies))
    await asyncio.sleep(0.2)
    main.reset()
    checkpoints.reset()
    before = len(latencies)
    started = time.perf_counter()
    removed = await store.prune_handoffs(keep=n // 2, older_than=0)
    duration = time.perf_counter() - started
    stop.set()
    await traffic
    during = sorted(latencies[before:]) or [0.0]
    return {
        "removed": removed, "prune_s": duration, "lock_ms": main.longest * 1000,
        "lock_cpu_ms": main.longest_cpu * 1000,
        "ckpt_lock_ms": checkpoints.longest * 1000, "keyed": len(during),
        "keyed_p50_ms": during[len(during) // 2] * 1000, "keyed_max_ms": during[-1] * 1000,
    }  # fmt: skip


async def sweep_cost(store: SQLiteStore, count: int = 20_000) -> dict[str, float]:
    lock = TimedLock()
    store._ckpt_lock = lock  # type: ignore[assignment]
    past = time.time() - 1
    for i in range(count):  # expired answers nobody claims again
        await store.complete_checkpoint(f"old{i}", "d", status=200, headers={}, body=b"{}", expires_at=past)
    lock.reset()
    started = time.perf_counter()
    swept = await asyncio.to_thread(store.sweep_checkpoints)
    return {"swept": swept, "sweep_s": time.perf_counter() - started, "sweep_lock_ms": lock.longest * 1000}


async def measure_size(n: int, directory: Path) -> dict[str, float]:
    path = directory / f"audit-{n}.db"
    store = SQLiteStore(str(path))
    now = time.time()
    try:
        fill_s = await fill(store, n, now)
        await store._run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        row = {"n": n, "fill_s": fill_s, "bytes_per_record": path.stat().st_size / n}
        row["runs_ms"] = await median_ms(lambda: store.list_runs(50))
        row["failures_ms"] = await median_ms(lambda: store.failure_counts(now - 3600))
        row |= await prune_under_traffic(store, n)
        row |= await sweep_cost(store)
        return row
    finally:
        await store.close()
        await asyncio.to_thread(lambda: [file.unlink() for file in directory.glob(f"audit-{n}*")])


def loop_cpu_us(work: Callable[[], object], repeat: int) -> float:
    """CPU of the calling thread (the event loop's, in the gateway) per call, in µs."""
    started = time.thread_time()
    for _ in range(repeat):
        work()
    return (time.thread_time() - started) / repeat * 1e6


def digest_costs() -> list[list[Any]]:
    rows = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for label, size, repeat in (("1 KiB", 1024, 20_000), ("100 KiB", 100 * 1024, 2_000)):
            body = os.urandom(size)
            inline = loop_cpu_us(lambda: hashlib.sha256(body).hexdigest(), repeat)  # noqa: B023
            futures: list[Any] = []
            handed = loop_cpu_us(lambda: futures.append(pool.submit(hashlib.sha256, body)), repeat)  # noqa: B023
            for future in futures:
                future.result()
            rows.append([label, inline, handed, "inline" if inline <= handed else "worker"])
    return rows


async def audit_cost(directory: Path) -> list[list[Any]]:
    """CPU per record (process-wide, so the writer's threads count) of enqueueing and of the batched write."""
    rows = []
    for label, size, count in (("1 KiB", 1024, 20_000), ("100 KiB", 100 * 1024, 2_000)):
        store = SQLiteStore(str(directory / f"cost-{size}.db"))
        audit = AuditLog(store, AuditSettings(queue_size=count, prune_interval=3600))
        body, now = os.urandom(size), time.time()
        records = [synthetic(i, now, count) for i in range(count)]
        started = time.process_time()
        for record in records:
            audit.record(record, body, body)
        enqueued = time.process_time()
        await audit.flush()
        written = time.process_time()
        await audit.close()
        await store.close()
        rows.append([label, (enqueued - started) / count * 1e6, (written - enqueued) / count * 1e6])
    return rows


async def run(sizes: Sequence[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        rows = [await measure_size(n, directory) for n in sizes]
        costs = await audit_cost(directory)
    print_table(
        "Audit queries and size (SQLite file; median of 25 calls)",
        ["handoffs", "fill s", "bytes/record", "GET /runs ms", "/stats/failures ms"],
        [[r["n"], r["fill_s"], r["bytes_per_record"], r["runs_ms"], r["failures_ms"]] for r in rows],
    )
    print_table(
        "Retention pass deleting half, under back-to-back keyed requests; checkpoint sweep of 20,000",
        ["handoffs", "removed", "pass s", "max lock ms", "its CPU ms", "ckpt lock ms", "keyed", "keyed p50 ms",
         "keyed max ms", "sweep s", "sweep lock ms"],
        [[r["n"], int(r["removed"]), r["prune_s"], r["lock_ms"], r["lock_cpu_ms"], r["ckpt_lock_ms"], int(r["keyed"]),
          r["keyed_p50_ms"], r["keyed_max_ms"], r["sweep_s"], r["sweep_lock_ms"]] for r in rows],
    )  # fmt: skip
    print_table(
        "Digest at enqueue: event-loop CPU per body (µs)",
        ["body", "sha256 inline", "hand to a worker", "cheaper"],
        digest_costs(),
    )
    print_table("Audit cost per record (µs CPU, process-wide)", ["bodies", "enqueue", "write"], costs)
    first, last = rows[0], rows[-1]
    lock = max(max(r["lock_ms"], r["ckpt_lock_ms"], r["sweep_lock_ms"]) for r in rows)
    cpu = max(r["lock_cpu_ms"] for r in rows)
    print_table(
        f"Growth ratios, {last['n']:,} vs {first['n']:,} handoffs (targets: queries <= 2x, lock hold <= 50 ms)",
        ["measure", "ratio / value", "target", "met"],
        [
            ["GET /runs", last["runs_ms"] / first["runs_ms"], TARGETS["growth"],
             last["runs_ms"] / first["runs_ms"] <= TARGETS["growth"]],
            ["/stats/failures", last["failures_ms"] / first["failures_ms"], TARGETS["growth"],
             last["failures_ms"] / first["failures_ms"] <= TARGETS["growth"]],
            ["longest lock hold ms (wall)", lock, TARGETS["lock_ms"], lock <= TARGETS["lock_ms"]],
            ["longest prune lock hold ms (CPU)", cpu, TARGETS["lock_ms"], cpu <= TARGETS["lock_ms"]],
        ],
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k and 100k handoffs")
    parser.add_argument("--sizes", nargs="+", type=int)
    args = parser.parse_args(argv)
    asyncio.run(run(args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
