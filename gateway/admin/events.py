"""The console's live feed: ``GET /events`` streams new handoffs, changed runs and DLQ changes as server-sent events.

The feed is made by polling the store, not by listening to this process's audit writer: a fleet of gateways
sharing Redis writes records from every process, and only the store sees them all; polling also needs nothing
from the data path. Each connected client gets its own :class:`Watcher`, whose work per tick is bounded (the
newest :data:`RUN_WINDOW` runs, at most :data:`MAX_RUN_READS` timelines read, at most :data:`MAX_HANDOFF_EVENTS`
handoffs announced per run, the newest :data:`DLQ_WINDOW` escalations), so a busy fleet cannot make one console
tab read the whole audit trail every half second.

The endpoint sits behind the admin token like every data call. Browsers cannot set headers on ``EventSource``,
so the console reads the stream with ``fetch()`` and a ``ReadableStream`` reader, keeping the token out of URLs.
When the admin app shuts down, every stream ends at once (an ``on_shutdown`` hook), so a console left open never
holds the gateway's exit for aiohttp's shutdown timeout: that includes a stream blocked writing to a client that
stopped reading (the admin listener closes first, so its 60 s wait postponed the data plane's drain past a pod's
grace period). Such a client is also dropped after :data:`WRITE_TIMEOUT`, and at most :data:`MAX_STREAMS` streams
are open at once (each polls the store twice a second); another is refused with a 429 problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.admin.common import state_of
from gateway.errors import GatewayError, StoreUnavailable
from gateway.store.base import EscalationItem, HandoffRecord, RunSummary, Store

log = logging.getLogger("agent_gateway.admin.events")

POLL_INTERVAL = 0.5
"""Seconds between two looks at the store (the audit writer flushes every 0.25 s by default)."""
KEEPALIVE_INTERVAL = 15.0
"""Seconds of silence after which a comment line is sent, so proxies keep the stream and a gone client is noticed."""
RUN_WINDOW = 20
MAX_RUN_READS = 5
"""Changed runs whose timeline one tick reads; the rest are read on the following ticks."""
MAX_HANDOFF_EVENTS = 50
DLQ_WINDOW = 50
MAX_STREAMS = 16
"""Streams open at once per admin listener: a console tab needs one, a busy team a handful."""
WRITE_TIMEOUT = KEEPALIVE_INTERVAL
"""Seconds a client may take to accept one write before its stream is dropped (it stopped reading)."""


class TooManyStreams(GatewayError):
    """Every stream slot is taken: the client retries after a keep-alive interval (a tab was probably closed)."""

    status = 429
    kind = "too-many-streams"
    title = "Too many event streams"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(KEEPALIVE_INTERVAL))}


@dataclass(slots=True)
class Streams:
    """The admin app's open streams and its shutdown signal."""

    stopping: asyncio.Event
    open: int = 0


STREAMS = web.AppKey("events_streams", Streams)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: Mapping[str, Any]

    def encode(self) -> bytes:
        """One SSE frame; orjson never emits a raw newline, so the data fits on one ``data:`` line."""
        return b"event: " + self.name.encode() + b"\ndata: " + orjson.dumps(self.data) + b"\n\n"


def run_view(run: RunSummary) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunSummary.__slots__}


HANDOFF_FIELDS = (
    *("id", "run_id", "step", "attempt", "source", "target", "method", "path", "status", "verdict"),
    *("started_at", "duration_ms", "contract", "contract_version", "violation_count", "checkpoint"),
)


def handoff_view(record: HandoffRecord) -> dict[str, Any]:
    """The handoff without payloads or violations: the feed announces, ``GET /runs/{id}`` tells the story."""
    return {name: getattr(record, name) for name in HANDOFF_FIELDS}


def escalation_view(item: EscalationItem, pending: int) -> dict[str, Any]:
    """The item's identity and status, and how many items wait in all (for the console's badge)."""
    fields = ("id", "status", "route", "run_id", "reason", "created_at", "contract", "contract_version")
    return {**{name: getattr(item, name) for name in fields}, "pending": pending}


class Watcher:
    """What one client has been told so far; :meth:`tick` returns what changed in the store since.

    The first tick is the baseline and announces nothing. A run first read after the baseline announces the
    handoffs that started after the last one the baseline saw; from then on the ids already announced are kept
    (for runs still in the window only), so a record another gateway writes late is still announced once.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._runs: dict[str, RunSummary] = {}
        self._seen: dict[str, set[str]] = {}
        self._escalations: dict[str, str] = {}
        self._primed = False

    async def tick(self) -> list[Event]:
        recent = await self._store.list_runs(RUN_WINDOW)
        items = await self._store.list_escalations(status=None, route=None, limit=DLQ_WINDOW)
        if not self._primed:
            self._primed = True
            self._runs = {run.run_id: run for run in recent}
            self._escalations = {item.id: item.status for item in items}
            return []
        return await self._run_events(recent) + await self._dlq_events(items)

    async def _run_events(self, recent: list[RunSummary]) -> list[Event]:
        events: list[Event] = []
        changed = [run for run in recent if self._runs.get(run.run_id) != run]
        for run in changed[:MAX_RUN_READS]:
            events += await self._new_handoffs(run)
            events.append(Event("run", run_view(run)))
            self._runs[run.run_id] = run
        window = {run.run_id for run in recent}
        for gone in self._runs.keys() - window:
            del self._runs[gone]
            self._seen.pop(gone, None)
        return events

    async def _new_handoffs(self, run: RunSummary) -> list[Event]:
        records = await self._store.run_handoffs(run.run_id)
        seen = self._seen.get(run.run_id)
        if seen is None:
            known = self._runs.get(run.run_id)
            cutoff = known.last_at if known is not None else -math.inf
            fresh = [r for r in records if r.started_at > cutoff]
        else:
            fresh = [r for r in records if r.id not in seen]
        self._seen[run.run_id] = {r.id for r in records}
        return [Event("handoff", handoff_view(r)) for r in fresh[-MAX_HANDOFF_EVENTS:]]

    async def _dlq_events(self, items: list[EscalationItem]) -> list[Event]:
        changed = [item for item in items if self._escalations.get(item.id) != item.status]
        self._escalations = {item.id: item.status for item in items}
        if not changed:
            return []
        pending = await self._store.count_escalations("pending")
        return [Event("dlq", escalation_view(item, pending)) for item in reversed(changed)]


async def _next_frames(watcher: Watcher) -> bytes:
    """The frames of one tick; a store outage is announced as a ``problem`` event and the feed keeps polling."""
    try:
        return b"".join(event.encode() for event in await watcher.tick())
    except StoreUnavailable as exc:
        return Event("problem", exc.problem(None)).encode()


async def _delivered(
    request: web.Request, response: web.StreamResponse, frames: bytes, stopping: asyncio.Event
) -> bool:
    """Write ``frames``; ``False`` (and the connection aborted) if the app stops or the client does not take them
    within :data:`WRITE_TIMEOUT`: ``write`` waits for the client to drain, which a stalled reader never does."""
    write, stop = asyncio.ensure_future(response.write(frames)), asyncio.ensure_future(stopping.wait())
    await asyncio.wait((write, stop), timeout=WRITE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if write.done():
        write.result()
        return True
    write.cancel()
    if request.transport is not None:
        request.transport.abort()
    log.info("events client dropped: it took no data for %g s or the gateway is stopping", WRITE_TIMEOUT)
    return False


async def stream_events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: a ``ready`` event once the baseline is taken, then what changes, until either side stops."""
    streams = request.app[STREAMS]
    if streams.open >= MAX_STREAMS:
        raise TooManyStreams(f"{MAX_STREAMS} event streams are open; close one (a console tab) or retry.")
    streams.open += 1
    try:
        return await _stream(request, streams.stopping)
    finally:
        streams.open -= 1


async def _stream(request: web.Request, stopping: asyncio.Event) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    watcher = Watcher(state_of(request).store)
    frames = await _next_frames(watcher) + Event("ready", {"poll_interval": POLL_INTERVAL}).encode()
    quiet = 0.0
    try:
        while not stopping.is_set() and _connected(request):
            if frames or quiet >= KEEPALIVE_INTERVAL:
                if not await _delivered(request, response, frames or b": keep-alive\n\n", stopping):
                    break
                quiet = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_INTERVAL)
            quiet += POLL_INTERVAL
            frames = b"" if stopping.is_set() else await _next_frames(watcher)
    except ConnectionResetError:
        log.debug("events client went away")
    return response


def _connected(request: web.Request) -> bool:
    """Whether the client is still there: a closed tab frees its slot at the next tick, not the next keep-alive."""
    return request.transport is not None and not request.transport.is_closing()


async def _stop_streams(app: web.Application) -> None:
    app[STREAMS].stopping.set()


def mount(app: web.Application) -> None:
    """Serve ``GET /events`` on the admin app, ended by the app's shutdown. Not in the OpenAPI document: a
    stream that never ends is not a response a generated client (or the schemathesis run) can wait for."""
    app[STREAMS] = Streams(asyncio.Event())
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/events", stream_events)
