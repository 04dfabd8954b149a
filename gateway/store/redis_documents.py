"""The Redis store's versioned documents (contracts, policies) and the change feed that announces changes.

Keys (under the store's prefix)::

    doc:latest:<kind>           HASH   id → newest version (HINCRBY makes N+1 atomic)
    doc:active:<kind>           HASH   id → version in force
    doc:ver:<kind>:<id>         HASH   version → {document, created_at, digest (of the content, hex)}
    changes                     pub/sub channel: "route" | "contract" | "policy" after every change
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from redis.exceptions import RedisError

from gateway.contracts.checked import content_digest
from gateway.store.base import DocumentHead, StoredDocument, cancel_requested, translate_errors
from gateway.store.redis_fleet import RedisFleet, as_text

# KEYS: latest, active, versions (of the kind and id). ARGV: id, digest of the document ('' if none), its entry.
# Answers {version, entry held} when the version in force has the digest, else {version stored and activated}.
FEED_POLL_SECONDS = 1.0
"""How long the change feed waits for a message before checking whether it was asked to stop."""

_ADD_ACTIVE_VERSION = """
local active = redis.call('HGET', KEYS[2], ARGV[1])
if active and ARGV[2] ~= '' then
  local held = redis.call('HGET', KEYS[3], active)
  if held and cjson.decode(held).digest == ARGV[2] then return {tonumber(active), held} end
end
local version = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[3], version, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], version)
return {version}
"""


@translate_errors(RedisError, OSError)
class RedisDocuments(RedisFleet):
    """The base of :class:`gateway.store.redis.RedisStore` (which sets what :class:`RedisFleet` names)."""

    # -- change feed: what keeps every sidecar's in-memory tables current --------------------------------

    async def _announce(self, kind: str) -> None:
        await self._redis.publish(self._k("changes"), kind)

    async def changes(self) -> AsyncIterator[str]:
        """The kinds ("route", "contract", "policy") changed by any gateway sharing this Redis."""
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._k("changes"))
        try:
            while not cancel_requested():  # redis-py can swallow a cancellation that lands in a read: look again
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=FEED_POLL_SECONDS)
                if message is not None and message.get("type") == "message":
                    yield as_text(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- versioned documents -----------------------------------------------------------------------------

    @staticmethod
    def _entry(document: Mapping[str, Any], created: float) -> tuple[bytes, str]:
        """A version's stored entry and its content's digest (hex, ``""`` if none), which the entry keeps so
        :meth:`add_active_version` compares contents on the server without canonical JSON there."""
        digest = content_digest(document)
        hexdigest = "" if digest is None else digest.hex()
        return orjson.dumps({"document": document, "created_at": created, "digest": hexdigest}), hexdigest

    async def add_version(self, kind: str, doc_id: str, document: Mapping[str, Any]) -> StoredDocument:
        created = time.time()
        entry, _ = self._entry(document, created)
        version = int(await self._redis.hincrby(self._k("doc", "latest", kind), doc_id, 1))
        await self._redis.hset(self._k("doc", "ver", kind, doc_id), str(version), entry)
        return StoredDocument(doc_id, version, document, created)

    async def add_active_version(self, kind: str, doc_id: str, document: Mapping[str, Any]) -> StoredDocument:
        """One Lua script (atomic on the server). A version stored before entries kept a digest never matches:
        at worst one more version of content already in force, what every registration did before."""
        created = time.time()
        entry, digest = self._entry(document, created)
        keys = (self._k("doc", "latest", kind), self._k("doc", "active", kind), self._k("doc", "ver", kind, doc_id))
        answer = await self._redis.eval(_ADD_ACTIVE_VERSION, 3, *keys, doc_id, digest, entry)
        if len(answer) > 1:
            held = orjson.loads(answer[1])
            return StoredDocument(doc_id, int(answer[0]), held["document"], held["created_at"])
        await self._announce(kind)
        return StoredDocument(doc_id, int(answer[0]), document, created)

    async def get_version(self, kind: str, doc_id: str, version: int) -> StoredDocument | None:
        raw = await self._redis.hget(self._k("doc", "ver", kind, doc_id), str(version))
        if raw is None:
            return None
        entry = orjson.loads(raw)
        return StoredDocument(doc_id, version, entry["document"], entry["created_at"])

    async def list_versions(self, kind: str, doc_id: str) -> list[StoredDocument]:
        raw = await self._redis.hgetall(self._k("doc", "ver", kind, doc_id))
        entries = sorted((int(v), orjson.loads(e)) for v, e in raw.items())
        return [StoredDocument(doc_id, v, e["document"], e["created_at"]) for v, e in entries]

    async def list_heads(self, kind: str) -> list[DocumentHead]:
        latest = await self._redis.hgetall(self._k("doc", "latest", kind))
        active = await self._redis.hgetall(self._k("doc", "active", kind))
        return [
            DocumentHead(as_text(doc_id), int(latest[doc_id]), int(active[doc_id]) if doc_id in active else None)
            for doc_id in sorted(latest)
        ]

    async def set_active(self, kind: str, doc_id: str, version: int | None) -> None:
        key = self._k("doc", "active", kind)
        if version is None:
            await self._redis.hdel(key, doc_id)
        else:
            await self._redis.hset(key, doc_id, str(version))
        await self._announce(kind)

    async def active_documents(self, kind: str) -> list[StoredDocument]:
        active = {
            as_text(i): as_text(v) for i, v in (await self._redis.hgetall(self._k("doc", "active", kind))).items()
        }
        ids = sorted(active)
        pipe = self._redis.pipeline(transaction=False)  # one round trip for every document, not one each
        for doc_id in ids:
            pipe.hget(self._k("doc", "ver", kind, doc_id), active[doc_id])
        entries = [orjson.loads(raw) if raw is not None else None for raw in await pipe.execute()]
        return [
            StoredDocument(doc_id, int(active[doc_id]), entry["document"], entry["created_at"])
            for doc_id, entry in zip(ids, entries, strict=True)
            if entry is not None
        ]
