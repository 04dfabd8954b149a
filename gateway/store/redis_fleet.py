"""The Redis store's fleet keys: the webhook outbox, shared breaker transitions, and the DLQ as a stream.

Keys (under the store's prefix)::

    outbox:<item id>            STRING one webhook delivery (JSON)
    outbox:due                  ZSET   item ids of pending deliveries by next due time; a claim moves an entry
                                       forward by the lease, so an entry whose deliverer died is due again after it
    outbox:lease                HASH   item id → the gateway holding the lease (the only one that may finish it)
    breakers                    HASH   breaker name → its newest shared transition (JSON)
    dlq:stream                  STREAM one entry per escalation event (XADD), read by the consumer group
                                       :data:`DLQ_GROUP`; trimmed to about :data:`DLQ_STREAM_MAXLEN` entries

The claim, the finish, the release and the newest-wins breaker write are Lua scripts: each is one atomic step on
the server, so two gateways can never both hold a delivery, and a slow write of an older transition never undoes a
newer one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from gateway.store.base import BreakerRecord, EscalationItem, WebhookDelivery, translate_errors
from gateway.store.codec import decode_breaker, decode_delivery, encode_breaker, encode_delivery, encode_item

DLQ_GROUP = "agent-gateway-dlq"
"""The consumer group created on the DLQ stream (from its first entry), for external tools to read with
``XREADGROUP GROUP agent-gateway-dlq <consumer> STREAMS <prefix>dlq:stream >``."""
DLQ_STREAM_MAXLEN = 100_000
"""About how many events the stream keeps (``MAXLEN ~``): the items themselves stay in ``esc:<id>``."""

# KEYS: due, lease. ARGV: now, lease until, limit, owner.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HSET', KEYS[2], id, ARGV[4])
end
return ids
"""

# KEYS: due, lease, entry. ARGV: item id, owner, entry, next due ('' when finished for good).
_FINISH = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[3])
if ARGV[4] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1]) end
return 1
"""

# KEYS: due, lease. ARGV: owner, now.
_RELEASE = """
local held = redis.call('HGETALL', KEYS[2])
local released = 0
for i = 1, #held, 2 do
  if held[i + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[2], held[i])
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], held[i])
    released = released + 1
  end
end
return released
"""

# KEYS: breakers. ARGV: name, at, origin, record.
_PUT_BREAKER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local held = cjson.decode(current)
  local at = tonumber(ARGV[2])
  if held.at > at or (held.at == at and held.origin >= ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
"""


def as_text(value: Any) -> str:
    """redis-py answers bytes (its type hints allow more); keys and ids are ASCII text here."""
    return value.decode() if isinstance(value, bytes) else str(value)


@translate_errors(RedisError, OSError)
class RedisFleet:
    """The base of :class:`gateway.store.redis.RedisStore`, which sets ``_redis``, ``_p`` (prefix), ``failures``."""

    failures: Counter[str]
    _redis: aioredis.Redis
    _p: str
    _dlq_group_ready = False

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    async def _ensure_dlq_group(self) -> None:
        """Create the stream and its group once, reading from the stream's start (``0``): the group sees
        every item escalated since the stream began, whenever an external tool first reads it."""
        if self._dlq_group_ready:
            return
        try:
            await self._redis.xgroup_create(self._k("dlq", "stream"), DLQ_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._dlq_group_ready = True

    def _stream_event(self, pipe: Pipeline, event: str, item: EscalationItem) -> None:
        fields: dict[Any, Any] = {"event": event, "id": item.id, "status": item.status, "route": item.route,
                                  "reason": item.reason, "item": encode_item(item)}  # fmt: skip
        pipe.xadd(self._k("dlq", "stream"), fields, maxlen=DLQ_STREAM_MAXLEN, approximate=True)

    def _queue_delivery(self, pipe: Pipeline, delivery: WebhookDelivery) -> None:
        pipe.set(self._k("outbox", delivery.item_id), encode_delivery(delivery))
        pipe.zadd(self._k("outbox", "due"), {delivery.item_id: delivery.next_at})

    async def claim_webhooks(self, owner: str, *, now: float, lease: float, limit: int) -> list[WebhookDelivery]:
        due, leases = self._k("outbox", "due"), self._k("outbox", "lease")
        ids = await self._redis.eval(_CLAIM, 2, due, leases, repr(now), repr(now + lease), limit, owner)
        if not ids:
            return []
        blobs = await self._redis.mget([self._k("outbox", as_text(i)) for i in ids])
        return [decode_delivery(b) for b in blobs if b is not None]

    async def finish_webhook(self, delivery: WebhookDelivery, owner: str) -> bool:
        keys = (self._k("outbox", "due"), self._k("outbox", "lease"), self._k("outbox", delivery.item_id))
        next_at = repr(delivery.next_at) if delivery.status == "pending" else ""
        done = await self._redis.eval(_FINISH, 3, *keys, delivery.item_id, owner, encode_delivery(delivery), next_at)
        return bool(done)

    async def release_webhooks(self, owner: str, *, now: float) -> int:
        """One script: a claim by another gateway cannot land between reading the leases and clearing ours."""
        due, leases = self._k("outbox", "due"), self._k("outbox", "lease")
        return int(await self._redis.eval(_RELEASE, 2, due, leases, owner, repr(now)))

    async def webhook_delivery(self, item_id: str) -> WebhookDelivery | None:
        blob = await self._redis.get(self._k("outbox", item_id))
        return None if blob is None else decode_delivery(blob)

    async def put_breaker(self, record: BreakerRecord) -> None:
        await self._redis.eval(
            _PUT_BREAKER, 1, self._k("breakers"), record.name, repr(record.at), record.origin, encode_breaker(record)
        )

    async def breaker_records(self) -> list[BreakerRecord]:
        raw = await self._redis.hgetall(self._k("breakers"))
        return sorted((decode_breaker(blob) for blob in raw.values()), key=lambda r: r.name)
