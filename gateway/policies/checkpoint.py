"""Checkpoint-and-resume: a validated response stored under the request's idempotency key.

Keys: the ``Idempotency-Key`` header, or — when the policy sets ``run_step`` — ``X-Run-Id`` + ``X-Step``; both
scoped by route, method and path. Conflicts follow the IETF Idempotency-Key draft: the same key with a
different body → 422; a duplicate while the first is still in flight → 409. Only 2xx responses no larger than
``max_bytes`` are stored, for ``ttl_seconds``. A pipeline that crashed midway re-runs with the same keys and gets
each stored response back (``X-Checkpoint: hit``) without calling the agents again, resuming at the first step
that never completed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.errors import CheckpointInFlight, IdempotencyKeyReused
from gateway.policies.document import Checkpoint
from gateway.store.base import Store

_KEPT_HEADERS = frozenset({"content-type", "content-language", "x-contract-verdict"})


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    headers: Mapping[str, str]
    body: bytes


def checkpoint_key(route: str, method: str, path: str, headers: Mapping[str, str], policy: Checkpoint) -> str | None:
    if not policy.enabled:
        return None
    idempotency_key = headers.get("Idempotency-Key")
    if idempotency_key:
        return f"{route} {method} {path} key:{idempotency_key}"
    run, step = headers.get("X-Run-Id"), headers.get("X-Step")
    if policy.run_step and run and step:
        return f"{route} {method} {path} run:{run} step:{step}"
    return None


def request_digest(body: bytes | None) -> str:
    return hashlib.sha256(body or b"").hexdigest()


class Checkpoints:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def begin(self, key: str, digest: str, policy: Checkpoint) -> Replay | None:
        """Claim ``key`` for this call, or return the stored response; raise on IETF-draft conflicts."""
        existing = await self._store.claim_checkpoint(key, digest, now=self._clock(), ttl=policy.ttl_seconds)
        if existing is None:
            return None
        if existing.request_digest != digest:
            raise IdempotencyKeyReused()
        if existing.state != "done" or existing.status is None or existing.body is None:
            raise CheckpointInFlight()
        return Replay(existing.status, dict(existing.headers or {}), existing.body)

    async def complete(
        self, key: str, digest: str, status: int, headers: Mapping[str, str], body: bytes, policy: Checkpoint
    ) -> bool:
        """Store a response; returns whether it qualified (2xx, within ``max_bytes``)."""
        if not 200 <= status < 300 or len(body) > policy.max_bytes:
            await self.abandon(key)
            return False
        kept = {str(k): v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
        await self._store.complete_checkpoint(
            key, digest, status=status, headers=kept, body=body, expires_at=self._clock() + policy.ttl_seconds
        )
        return True

    async def abandon(self, key: str) -> None:
        await self._store.release_checkpoint(key)
