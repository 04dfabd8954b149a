"""Checkpoint-and-resume: a validated response stored under the request's idempotency key.

Keys: the ``Idempotency-Key`` header, or — when the policy sets ``run_step`` — ``X-Run-Id`` + ``X-Step``; both
scoped by route, method and path. Conflicts follow the IETF Idempotency-Key draft: the same key with a
different body → 422; a duplicate while the first is still in flight → 409. Only 2xx responses no larger than
``max_bytes`` are stored, for ``ttl_seconds``. A pipeline that crashed midway re-runs with the same keys and gets
each stored response back (``X-Checkpoint: hit``) without calling the agents again, resuming at the first step
that never completed.

A call's claim on its key is a :class:`Lease` of ``lease_seconds`` (not the full TTL), renewed in the background
while the call runs: a gateway killed mid-call frees the key within seconds instead of answering 409 for a day.
Only the stored answer gets ``ttl_seconds``.

An answer holding a value at an ``audit.redact`` pointer is relayed but not stored: the store never keeps a
credential, and a checkpoint must replay the exact answer, so a redacted copy would be a different answer.

When the store fails (:class:`StoreUnavailable`): a failed claim is the caller's to decide (the policy's
``on_store_error``); a failed completion raises so the proxy can relay the answer marked ``X-Checkpoint: bypass``;
a failed release or renewal is left to the lease to clean up (the store logs and counts every failure).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from gateway.errors import CheckpointInFlight, IdempotencyKeyReused, StoreUnavailable
from gateway.policies.document import Checkpoint
from gateway.redaction import Redactor
from gateway.store.base import Store, cancel_requested

log = logging.getLogger("agent_gateway.checkpoint")

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
    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, *, redactor: Redactor | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._redactor = redactor
        self._renewers: set[asyncio.Task[None]] = set()
        """Strong references: the event loop keeps only weak ones, and a lease may be dropped mid-cancel."""

    def keep(self, task: asyncio.Task[None]) -> None:
        self._renewers.add(task)
        task.add_done_callback(self._renewers.discard)

    async def begin(self, key: str, digest: str, policy: Checkpoint) -> Replay | Lease:
        """Claim ``key`` for this call (a renewed :class:`Lease`), or return the stored response; raise on
        IETF-draft conflicts, and :class:`StoreUnavailable` when the store cannot say."""
        owner = secrets.token_hex(8)
        now = self._clock()
        existing = await self._store.claim_checkpoint(key, digest, now=now, ttl=policy.lease_seconds, owner=owner)
        if existing is None:
            return Lease(self, key, digest, owner, policy)
        if existing.request_digest != digest:
            raise IdempotencyKeyReused()
        if existing.state != "done" or existing.status is None or existing.body is None:
            raise CheckpointInFlight()
        return Replay(existing.status, dict(existing.headers or {}), existing.body)

    async def complete(
        self, key: str, digest: str, status: int, headers: Mapping[str, str], body: bytes, policy: Checkpoint,
        owner: str | None = None,
    ) -> bool:  # fmt: skip
        """Store a response; returns whether it qualified (2xx, within ``max_bytes``, no value at a redacted
        location). A response that does not qualify releases the claim (``owner``'s only, when given); a store
        failure raises."""
        if not 200 <= status < 300 or len(body) > policy.max_bytes or self._keeps_secret(body):
            await self.abandon(key, owner)
            return False
        kept = {str(k): v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
        await self._store.complete_checkpoint(
            key, digest, status=status, headers=kept, body=body, expires_at=self._clock() + policy.ttl_seconds
        )
        return True

    def _keeps_secret(self, body: bytes) -> bool:
        return self._redactor is not None and self._redactor.holds_redacted(body)

    async def abandon(self, key: str, owner: str | None = None) -> None:
        """Free an in-flight claim so the caller may try again. Never raises for a store failure: a claim the
        store could not release expires with its lease, and the failure was logged and counted by the store."""
        try:
            await self._store.release_checkpoint(key, owner)
        except StoreUnavailable:
            log.warning("could not release checkpoint claim %r; it expires with its lease", key)

    async def renew(self, key: str, owner: str, policy: Checkpoint) -> bool:
        """Extend ``owner``'s claim by a lease; ``False`` once it holds none (raises on a store failure)."""
        return await self._store.renew_checkpoint(key, owner, expires_at=self._clock() + policy.lease_seconds)


class Lease:
    """One call's in-flight claim on a key, renewed every third of ``lease_seconds`` until the call ends.

    Used as ``async with lease:`` around the call: leaving stops the renewals, and leaving with an exception
    (a cancelled or failed call) releases the claim unless :meth:`complete` or :meth:`release` settled it.
    """

    def __init__(self, checkpoints: Checkpoints, key: str, digest: str, owner: str, policy: Checkpoint) -> None:
        self.key = key
        self._checkpoints = checkpoints
        self._digest = digest
        self._owner = owner
        self._policy = policy
        self._settled = False
        self._renewer = asyncio.create_task(self._renew(), name="checkpoint-lease")
        checkpoints.keep(self._renewer)

    async def _renew(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self._policy.lease_seconds / 3)
            try:
                if not await self._checkpoints.renew(self.key, self._owner, self._policy):
                    log.warning("lost the in-flight claim on checkpoint %r: a duplicate call may run", self.key)
                    return
            except StoreUnavailable:
                continue  # logged and counted by the store; try again while the lease lasts

    async def complete(self, status: int, headers: Mapping[str, str], body: bytes | None) -> bool:
        """Store the answer (``None``: a streamed one, never stored); whether it was stored. Raises
        :class:`StoreUnavailable` when the store fails: the caller still has the answer to relay."""
        self._stop()
        if body is None:
            await self.release()
            return False
        self._settled = True
        return await self._checkpoints.complete(
            self.key, self._digest, status, headers, body, self._policy, self._owner
        )

    async def release(self) -> None:
        self._stop()
        self._settled = True
        await self._checkpoints.abandon(self.key, self._owner)

    def _stop(self) -> None:
        self._renewer.cancel()

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop()
        if kind is not None and not self._settled:
            await self.release()
