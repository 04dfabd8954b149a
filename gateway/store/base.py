"""The store interface: everything the gateway must remember lives behind this protocol.

Methods are coroutines so that a networked backend (Redis, for many sidecars) fits the same shape as the
embedded SQLite default. The data plane reads routes, contracts and policies from in-memory snapshots that the
registries rebuild after each change; it awaits the store only for checkpoints and stale-context lookups.

A store can fail (Redis restarted, a disk full). Every backend turns its driver's errors into
:class:`gateway.errors.StoreUnavailable` (503 + Retry-After) with :func:`translate_errors`, so a failure
that nothing handles more specifically is still a problem document, never a 500; each backend counts its
failures per operation in ``failures`` (``agent_gateway_store_errors_total``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from gateway.config import RouteSpec
from gateway.errors import StoreUnavailable

log = logging.getLogger("agent_gateway.store")

C = TypeVar("C", bound=type)

PRUNE_BATCH = 500
"""Records deleted per transaction (SQLite) or pipeline (Redis) by retention: about 5 ms of store time each
(measured by loadtests/scale_store.py), so work waiting on the store interleaves with a pass of any size."""


def translate_errors(*errors: type[BaseException]) -> Callable[[C], C]:
    """Class decorator: each public coroutine method of a backend raises :class:`StoreUnavailable` (named after
    the method) instead of any of ``errors``, logs the driver's message and counts it in ``self.failures``.

    One place per backend instead of a ``try`` in every method, so no method can be forgotten."""

    def wrap(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def translated(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            except errors as exc:
                self.failures[name] += 1
                log.warning("store operation %s failed: %s: %s", name, type(exc).__name__, exc)
                raise StoreUnavailable(name) from exc

        return translated

    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, wrap(name, member))
        return cls

    return decorate


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """One immutable version of a registered document (a contract or a policy)."""

    id: str
    version: int
    document: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class DocumentHead:
    """Where a document stands: its newest version and the one in force (``None`` when deleted)."""

    id: str
    latest_version: int
    active_version: int | None


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """One handoff attempt as the audit trail keeps it: who called whom, under which contract, with what verdict.

    Payload digests are SHA-256 of the exact bytes that crossed the gateway; the payloads themselves are kept
    only when ``audit.payloads`` is on, after redaction.
    """

    id: str
    run_id: str
    step: str
    attempt: int
    source: str
    target: str
    method: str
    path: str
    status: int
    verdict: str
    trace_id: str
    started_at: float
    duration_ms: float
    upstream_ms: float | None = None
    contract: str | None = None
    contract_version: int | None = None
    violations: tuple[Mapping[str, str], ...] = ()
    violation_count: int = 0
    category: str | None = None
    failure_mode: str | None = None
    request_bytes: int | None = None
    response_bytes: int | None = None
    request_sha256: str | None = None
    response_sha256: str | None = None
    request_payload: Any = None
    response_payload: Any = None
    checkpoint: str | None = None
    """``stored``, ``hit``, or ``bypass`` (the store failed: this answer has no checkpoint); ``None`` if unkeyed."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    first_at: float
    last_at: float
    handoffs: int
    failures: int


@dataclass(frozen=True, slots=True)
class FailureCount:
    route: str
    category: str
    mode: str
    count: int


@dataclass(frozen=True, slots=True)
class ArtifactVersion:
    """A version of a run's artifact (a draft, a plan) that some agent produced, in production order."""

    run_id: str
    artifact: str
    version: float | None
    digest: str | None
    produced_at: float


@dataclass(frozen=True, slots=True)
class EscalationItem:
    """A failed handoff waiting for a person: everything needed to judge it, fix it, or replay it."""

    id: str
    created_at: float
    status: str
    """``pending``, ``resolved`` (a person supplied the response), ``replayed`` (a replay succeeded), ``discarded``."""
    reason: str
    route: str
    method: str
    path: str
    query: str
    request_headers: Mapping[str, str]
    request_body: bytes | None
    trace_id: str
    run_id: str
    attempts: int
    contract: str | None = None
    contract_version: int | None = None
    upstream_status: int | None = None
    upstream_body: bytes | None = None
    violations: tuple[Mapping[str, str], ...] = ()
    checkpoint_key: str | None = None
    request_digest: str | None = None
    """SHA-256 of the request body as received, for the checkpoint a resolution fills: ``request_body`` may be
    stored redacted, and a digest of that would not match the pipeline's re-run of the same request."""
    resolution_status: int | None = None
    resolution_body: bytes | None = None
    resolved_at: float | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A stored handoff result keyed by idempotency key; ``state`` is ``in_flight`` until the response is in.

    An in-flight claim is a short lease held by ``owner`` (one call in one gateway process) and renewed while the
    call runs, so a gateway that dies mid-call frees the key once ``expires_at`` passes; a ``done`` record
    lives for the checkpoint's full TTL."""

    key: str
    request_digest: str
    state: str
    expires_at: float
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: bytes | None = None
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A breaker transition one sidecar shares with the fleet (``breaker.sharing: fleet``).

    Times are wall-clock (``time.time``) because they cross hosts; the newest ``at`` wins (ties by ``origin``), so
    a late write of an older transition never undoes a newer one."""

    name: str
    state: str
    """``open``, ``closed`` (probes succeeded, or a ``reset``), ``forced_open`` or ``forced_closed``."""
    at: float
    origin: str
    """The sidecar that made the transition (host, process and a random part)."""
    manual: bool = False
    """A command (``force-open``, ``force-close``, ``reset``): only a command leaves a forced state."""
    open_until: float | None = None
    """For ``open``: when probes may start."""

    def newer_than(self, other: BreakerRecord | None) -> bool:
        return other is None or (self.at, self.origin) > (other.at, other.origin)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One escalation webhook in the outbox: written with its DLQ item, delivered at least once.

    ``body`` is frozen when the item is escalated, so every attempt (from any sidecar) sends the same bytes
    under the same ``id`` (the ``Webhook-Id`` header a receiver deduplicates on)."""

    id: str
    item_id: str
    url: str
    body: bytes
    created_at: float
    next_at: float
    """When the next attempt is due (a claim moves it forward by the lease, so a dead deliverer's entry comes
    back due by itself)."""
    give_up_at: float
    max_attempts: int
    secret_env: str | None = None
    status: str = "pending"
    """``pending``, ``delivered`` or ``failed`` (gave up)."""
    attempts: int = 0
    last_error: str | None = None
    finished_at: float | None = None


@runtime_checkable
class ChangeFeed(Protocol):
    """A store shared by several gateways announces changes so each can rebuild its in-memory tables."""

    def changes(self) -> AsyncIterator[str]: ...


class Store(Protocol):
    failures: Counter[str]
    """Operations that failed (driver errors turned into :class:`StoreUnavailable`), by operation name."""

    async def list_routes(self) -> list[RouteSpec]: ...

    async def put_route(self, route: RouteSpec) -> None: ...

    async def delete_route(self, name: str) -> bool: ...

    # Versioned documents; ``kind`` is "contract" or "policy", each an independent namespace of ids.

    async def add_version(self, kind: str, doc_id: str, document: Mapping[str, Any]) -> StoredDocument:
        """Store ``document`` as version N+1 of ``doc_id`` (1 for a new id), atomically."""
        ...

    async def add_active_version(self, kind: str, doc_id: str, document: Mapping[str, Any]) -> StoredDocument:
        """Put ``document`` in force for ``doc_id`` in one atomic step: return the version in force unchanged
        when it already has this content (equal :func:`~gateway.contracts.checked.content_digest`), else store
        ``document`` as version N+1 and activate it. Registries check for "unchanged" against the table they
        loaded, which cannot see another gateway's write since: replicas starting together on the same files
        each minted a version of them (and, without a change feed, went on serving different ones)."""
        ...

    async def get_version(self, kind: str, doc_id: str, version: int) -> StoredDocument | None: ...

    async def list_versions(self, kind: str, doc_id: str) -> list[StoredDocument]: ...

    async def list_heads(self, kind: str) -> list[DocumentHead]: ...

    async def set_active(self, kind: str, doc_id: str, version: int | None) -> None: ...

    async def active_documents(self, kind: str) -> list[StoredDocument]:
        """The version in force of every document of ``kind`` (ids without one are left out), by id, in one
        round trip: start-up and change propagation load thousands of contracts, and one query per document
        made that linear in network or lock round trips."""
        ...

    async def append_handoffs(self, records: Sequence[HandoffRecord]) -> None: ...

    async def run_handoffs(self, run_id: str) -> list[HandoffRecord]:
        """Every recorded handoff of a run, oldest first."""
        ...

    async def list_runs(self, limit: int) -> list[RunSummary]:
        """The most recently active runs first."""
        ...

    async def failure_counts(self, since: float) -> list[FailureCount]: ...

    async def prune_handoffs(self, *, keep: int, older_than: float) -> int:
        """Delete records beyond the newest ``keep`` and those started before ``older_than``."""
        ...

    async def add_artifact_version(self, version: ArtifactVersion) -> None: ...

    async def artifact_versions(self, run_id: str, artifact: str) -> list[ArtifactVersion]:
        """Versions of one artifact produced in a run, oldest first."""
        ...

    async def add_escalation(self, item: EscalationItem, webhook: WebhookDelivery | None = None) -> None:
        """Store ``item`` and, in the same transaction, its webhook in the outbox: an item is never kept
        without the notification it needs, nor a notification sent for an item that was not kept."""
        ...

    async def get_escalation(self, item_id: str) -> EscalationItem | None: ...

    async def list_escalations(self, *, status: str | None, route: str | None, limit: int) -> list[EscalationItem]:
        """Newest first."""
        ...

    async def replace_escalation(self, item: EscalationItem) -> None: ...

    async def count_escalations(self, status: str) -> int: ...

    async def claim_checkpoint(
        self, key: str, request_digest: str, *, now: float, ttl: float, owner: str | None = None
    ) -> CheckpointRecord | None:
        """Atomically claim ``key`` for ``ttl`` seconds (the lease) for a new call and return ``None``, unless
        a live record exists: then return it and change nothing."""
        ...

    async def renew_checkpoint(self, key: str, owner: str, *, expires_at: float) -> bool:
        """Extend ``owner``'s in-flight claim on ``key`` to ``expires_at``; ``False`` when it holds none (the
        claim was completed, released, or expired and taken by another call)."""
        ...

    async def complete_checkpoint(
        self, key: str, request_digest: str, *, status: int, headers: Mapping[str, str], body: bytes, expires_at: float
    ) -> None:
        """Store the response for ``key`` (also when nothing claimed it: a human resolution)."""
        ...

    async def release_checkpoint(self, key: str, owner: str | None = None) -> None:
        """Forget an ``in_flight`` claim whose call failed, so the caller may try again; with ``owner``, only
        that owner's claim (a call whose lease lapsed must not free the claim of the call that took over)."""
        ...

    # Webhook outbox: any number of gateways deliver; a claim is a lease so each entry has one deliverer.

    async def claim_webhooks(self, owner: str, *, now: float, lease: float, limit: int) -> list[WebhookDelivery]:
        """Pending deliveries due by ``now`` (at most ``limit``), leased to ``owner`` for ``lease`` seconds."""
        ...

    async def finish_webhook(self, delivery: WebhookDelivery, owner: str) -> bool:
        """Store the outcome of an attempt (``delivery`` as it is now: pending with its next due time,
        delivered, or failed); ``False`` when ``owner``'s lease was lost and nothing was written."""
        ...

    async def release_webhooks(self, owner: str, *, now: float) -> int:
        """Drop ``owner``'s leases on pending deliveries and make them due at ``now``; how many. A gateway
        stopping with attempts cut short calls this, so another gateway delivers them at once instead of
        after the lease (the attempt's outcome is unknown: it counts as not made)."""
        ...

    async def webhook_delivery(self, item_id: str) -> WebhookDelivery | None:
        """The webhook of a DLQ item, for its admin view."""
        ...

    # Fleet-wide circuit breakers.

    async def put_breaker(self, record: BreakerRecord) -> None:
        """Keep ``record`` unless the store holds a newer one for its breaker."""
        ...

    async def breaker_records(self) -> list[BreakerRecord]: ...

    async def close(self) -> None: ...


def cancel_requested() -> bool:
    """Whether the running task was asked to stop. A background loop over the store checks this as well as
    catching ``CancelledError``: a driver may turn a cancellation that lands mid-reconnect into its own error
    (redis-py does), and a loop that retries on errors would then never stop (a gateway that never closes)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
