"""The shared store for many sidecars: the same interface as SQLite, on one Redis.

What sharing buys: escalations, checkpoints, the audit trail, run artifacts (stale-context detection across
agents), routes and document history are the same for every gateway on the Redis. Each gateway still serves
routes, contracts and policies from in-memory tables; every change is announced on a pub/sub channel and each
gateway rebuilds the affected table from the store (``changes()``), so a contract registered through one
sidecar's admin API is enforced by all of them moments later.

Keys (all under ``prefix``, default ``agw:``)::

    routes                      HASH   name → route spec
    doc:*, changes              versioned documents and the change feed (``redis_documents.py``)
    h:seq / h:by-seq / h:by-time        record order and age (ZSETs of record ids)
    h:rec:<id>                  STRING one handoff record
    run:<run id>                ZSET   record ids of a run, in order
    runs                        ZSET   run ids by last activity; runs:first / runs:failures HASHes
    failures                    ZSET   "<id>|<route>|<category>|<mode>" by time
    art:<run>:<artifact>        LIST   versions produced (expire with the audit retention)
    esc:<id> / esc:by-time / esc:status:<status>   escalation items, their order, and status sets
    ckpt:<key>                  STRING checkpoint: an in-flight claim expires with its lease (SET NX claims it
                                atomically, the owner renews it), a stored answer with the checkpoint's TTL
    outbox:*, breakers, dlq:stream        the webhook outbox, fleet breakers, DLQ stream (``redis_fleet.py``)

When Redis is down every operation raises :class:`gateway.errors.StoreUnavailable` after a few quick
reconnection attempts (tens of milliseconds, not redis-py's default of ten with up to a second between them:
a data-plane call must fail fast), and the client reconnects by itself once Redis is back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from gateway.config import RouteSpec
from gateway.errors import StoreUnavailable
from gateway.store.base import (
    PRUNE_BATCH,
    ArtifactVersion,
    CheckpointRecord,
    EscalationItem,
    FailureCount,
    HandoffRecord,
    RunSummary,
    WebhookDelivery,
    translate_errors,
)
from gateway.store.codec import (
    decode_checkpoint,
    decode_item,
    decode_record,
    encode_checkpoint,
    encode_item,
    encode_record,
)
from gateway.store.redis_documents import RedisDocuments
from gateway.store.redis_fleet import as_text

# ARGV[1]: the owner ("" releases any in-flight claim).
_RELEASE_IN_FLIGHT = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local record = cjson.decode(value)
if record.state == 'in_flight' and (ARGV[1] == '' or record.owner == ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# ARGV: owner, new expires_at (seconds), lease left (milliseconds). Rewrites the record so it says when it expires.
_RENEW_IN_FLIGHT = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local record = cjson.decode(value)
if record.state ~= 'in_flight' or record.owner ~= ARGV[1] then return 0 end
record.expires_at = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', ARGV[3])
return 1
"""


@translate_errors(RedisError, OSError)
class RedisStore(RedisDocuments):
    def __init__(self, url: str, *, prefix: str = "agw:", retention_seconds: float = 7 * 24 * 3600) -> None:
        self.failures: Counter[str] = Counter()
        retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=2)
        self._redis: aioredis.Redis = aioredis.from_url(url, retry=retry)
        self._p = prefix
        self._retention = int(retention_seconds)

    # -- routes ------------------------------------------------------------------------------------------

    async def list_routes(self) -> list[RouteSpec]:
        specs = await self._redis.hvals(self._k("routes"))
        return sorted((RouteSpec.model_validate_json(s) for s in specs), key=lambda r: r.name)

    async def put_route(self, route: RouteSpec) -> None:
        await self._redis.hset(self._k("routes"), route.name, route.model_dump_json())
        await self._announce("route")

    async def delete_route(self, name: str) -> bool:
        removed = bool(await self._redis.hdel(self._k("routes"), name))
        await self._announce("route")
        return removed

    # -- audit trail -------------------------------------------------------------------------------------

    async def append_handoffs(self, records: Sequence[HandoffRecord]) -> None:
        first_seq = int(await self._redis.incrby(self._k("h", "seq"), len(records))) - len(records) + 1
        pipe = self._redis.pipeline(transaction=True)
        for seq, r in enumerate(records, start=first_seq):
            pipe.set(self._k("h", "rec", r.id), encode_record(r))
            pipe.zadd(self._k("h", "by-seq"), {r.id: seq})
            pipe.zadd(self._k("h", "by-time"), {r.id: r.started_at})
            pipe.zadd(self._k("run", r.run_id), {r.id: seq})
            pipe.zadd(self._k("runs"), {r.run_id: r.started_at}, gt=True)  # GT still adds new members
            pipe.hsetnx(self._k("runs", "first"), r.run_id, r.started_at)
            pipe.hincrby(self._k("runs", "failures"), r.run_id, 1 if r.category else 0)
            if r.category:
                pipe.zadd(self._k("failures"), {f"{r.id}|{r.target}|{r.category}|{r.failure_mode}": r.started_at})
        await pipe.execute()

    async def run_handoffs(self, run_id: str) -> list[HandoffRecord]:
        ids = await self._redis.zrange(self._k("run", run_id), 0, -1)
        blobs = await self._redis.mget([self._k("h", "rec", as_text(i)) for i in ids]) if ids else []
        return sorted((decode_record(b) for b in blobs if b is not None), key=lambda r: r.started_at)

    async def list_runs(self, limit: int) -> list[RunSummary]:
        newest: list[Any] = await self._redis.zrevrange(self._k("runs"), 0, limit - 1, withscores=True)
        run_ids = [as_text(raw_id) for raw_id, _ in newest]
        pipe = self._redis.pipeline(transaction=False)  # one round trip for the page, not three per run
        for run_id in run_ids:
            pipe.zcard(self._k("run", run_id))
            pipe.hget(self._k("runs", "first"), run_id)
            pipe.hget(self._k("runs", "failures"), run_id)
        answers = await pipe.execute()
        return [
            RunSummary(run_id, float(first or last), float(last), int(count), int(failures or 0))
            for (run_id, (_, last)), count, first, failures in zip(
                zip(run_ids, newest, strict=True), answers[0::3], answers[1::3], answers[2::3], strict=True
            )
        ]

    async def failure_counts(self, since: float) -> list[FailureCount]:
        members = await self._redis.zrangebyscore(self._k("failures"), since, "+inf")
        counts: dict[tuple[str, str, str], int] = {}
        for member in members:
            _, route, category, mode = as_text(member).split("|", 3)
            counts[(route, category, mode)] = counts.get((route, category, mode), 0) + 1
        return [FailureCount(*key, count) for key, count in sorted(counts.items())]

    async def prune_handoffs(self, *, keep: int, older_than: float) -> int:
        """Batches of :data:`PRUNE_BATCH` records, each in a few round trips (the oldest by age first, then the
        oldest beyond ``keep``), so no single command holds Redis for long however much there is to delete."""
        removed = 0
        while True:
            doomed = await self._redis.zrangebyscore(
                self._k("h", "by-time"), "-inf", f"({older_than}", start=0, num=PRUNE_BATCH
            )
            if not doomed:
                excess = int(await self._redis.zcard(self._k("h", "by-seq"))) - keep
                if excess <= 0:
                    return removed
                doomed = await self._redis.zrange(self._k("h", "by-seq"), 0, min(excess, PRUNE_BATCH) - 1)
            await self._forget([as_text(i) for i in doomed])
            removed += len(doomed)

    async def _forget(self, record_ids: list[str]) -> None:
        """Delete records and their index entries, then bring their runs' summaries in line with what is left."""
        blobs = await self._redis.mget([self._k("h", "rec", i) for i in record_ids])
        records = [decode_record(b) for b in blobs if b is not None]
        pipe = self._redis.pipeline(transaction=True)
        for r in records:
            pipe.zrem(self._k("run", r.run_id), r.id)
            if r.category:
                pipe.zrem(self._k("failures"), f"{r.id}|{r.target}|{r.category}|{r.failure_mode}")
                pipe.hincrby(self._k("runs", "failures"), r.run_id, -1)
        pipe.delete(*(self._k("h", "rec", i) for i in record_ids))
        pipe.zrem(self._k("h", "by-seq"), *record_ids)
        pipe.zrem(self._k("h", "by-time"), *record_ids)
        await pipe.execute()
        await self._resummarise(sorted({r.run_id for r in records}))

    async def _resummarise(self, run_ids: list[str]) -> None:
        """A run left without records leaves the run list; the others start at their first remaining record."""
        pipe = self._redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.zrange(self._k("run", run_id), 0, 0)
        firsts = [as_text(ids[0]) if ids else None for ids in await pipe.execute()]
        blobs = await self._redis.mget([self._k("h", "rec", i) for i in firsts if i is not None]) if any(firsts) else []
        started = iter(decode_record(b).started_at if b is not None else None for b in blobs)
        pipe = self._redis.pipeline(transaction=True)
        for run_id, first in zip(run_ids, firsts, strict=True):
            at = None if first is None else next(started)
            if at is None:
                pipe.zrem(self._k("runs"), run_id)
                pipe.hdel(self._k("runs", "first"), run_id)
                pipe.hdel(self._k("runs", "failures"), run_id)
            else:
                pipe.hset(self._k("runs", "first"), run_id, at)
        await pipe.execute()

    async def add_artifact_version(self, version: ArtifactVersion) -> None:
        key = self._k("art", version.run_id, version.artifact)
        entry = orjson.dumps({"version": version.version, "digest": version.digest, "at": version.produced_at})
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, entry)
        pipe.expire(key, self._retention)
        await pipe.execute()

    async def artifact_versions(self, run_id: str, artifact: str) -> list[ArtifactVersion]:
        entries = [orjson.loads(e) for e in await self._redis.lrange(self._k("art", run_id, artifact), 0, -1)]
        return [ArtifactVersion(run_id, artifact, e["version"], e["digest"], e["at"]) for e in entries]

    # -- escalations -------------------------------------------------------------------------------------

    async def add_escalation(self, item: EscalationItem, webhook: WebhookDelivery | None = None) -> None:
        await self._ensure_dlq_group()
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._k("esc", item.id), encode_item(item))
        pipe.zadd(self._k("esc", "by-time"), {item.id: item.created_at})
        pipe.sadd(self._k("esc", "status", item.status), item.id)
        self._stream_event(pipe, "escalation.created", item)
        if webhook is not None:
            self._queue_delivery(pipe, webhook)
        await pipe.execute()

    async def get_escalation(self, item_id: str) -> EscalationItem | None:
        blob = await self._redis.get(self._k("esc", item_id))
        return None if blob is None else decode_item(blob)

    async def list_escalations(self, *, status: str | None, route: str | None, limit: int) -> list[EscalationItem]:
        items: list[EscalationItem] = []
        page = max(limit, 100)
        start = 0
        while len(items) < limit:  # newest first, a page of items per round trip (not one GET per item)
            raw_ids = await self._redis.zrevrange(self._k("esc", "by-time"), start, start + page - 1)
            if not raw_ids:
                break
            start += page
            blobs = await self._redis.mget([self._k("esc", as_text(i)) for i in raw_ids])
            items += [
                item
                for item in (decode_item(b) for b in blobs if b is not None)
                if status in (None, item.status) and route in (None, item.route)
            ]
        return items[:limit]

    async def replace_escalation(self, item: EscalationItem) -> None:
        previous = await self.get_escalation(item.id)
        pipe = self._redis.pipeline(transaction=True)
        if previous is not None:
            pipe.srem(self._k("esc", "status", previous.status), item.id)
        pipe.set(self._k("esc", item.id), encode_item(item))
        pipe.sadd(self._k("esc", "status", item.status), item.id)
        self._stream_event(pipe, f"escalation.{item.status}", item)
        await pipe.execute()

    async def count_escalations(self, status: str) -> int:
        return int(await self._redis.scard(self._k("esc", "status", status)))

    # -- checkpoints -------------------------------------------------------------------------------------

    async def claim_checkpoint(
        self, key: str, request_digest: str, *, now: float, ttl: float, owner: str | None = None
    ) -> CheckpointRecord | None:
        claim = encode_checkpoint(CheckpointRecord(key, request_digest, "in_flight", now + ttl, owner=owner))
        for _ in range(3):  # a record can expire between the failed claim and the read: claim again
            if await self._redis.set(self._k("ckpt", key), claim, nx=True, px=max(1, int(ttl * 1000))):
                return None
            blob = await self._redis.get(self._k("ckpt", key))
            if blob is not None:
                return decode_checkpoint(blob)
        raise StoreUnavailable("claim_checkpoint")  # the key kept changing under us: the caller may try again

    async def renew_checkpoint(self, key: str, owner: str, *, expires_at: float) -> bool:
        lease_ms = max(1, int((expires_at - time.time()) * 1000))
        return bool(
            await self._redis.eval(_RENEW_IN_FLIGHT, 1, self._k("ckpt", key), owner, repr(expires_at), lease_ms)
        )

    async def complete_checkpoint(
        self, key: str, request_digest: str, *, status: int, headers: Mapping[str, str], body: bytes,
        expires_at: float,
    ) -> None:  # fmt: skip
        record = CheckpointRecord(key, request_digest, "done", expires_at, status, dict(headers), body)
        ttl_ms = max(1, int((expires_at - time.time()) * 1000))
        await self._redis.set(self._k("ckpt", key), encode_checkpoint(record), px=ttl_ms)

    async def release_checkpoint(self, key: str, owner: str | None = None) -> None:
        await self._redis.eval(_RELEASE_IN_FLIGHT, 1, self._k("ckpt", key), owner or "")

    async def close(self) -> None:
        await self._redis.aclose()
