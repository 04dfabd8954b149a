"""Fleet-wide circuit breakers: one gateway's transitions reach every gateway on the same store.

Semantics (a breaker whose policy says ``breaker.sharing: fleet``; ``sidecar``, the default, shares nothing):

- Each gateway counts its own calls: the window, the failure and slow-call rates and ``consecutive_failures``
  are local, so one sidecar's traffic never needs a store round trip per call.
- A transition into ``open`` (the window tripped here, or probes failed here), ``closed`` (probes succeeded
  here, or ``reset``), ``forced_open`` or ``forced_closed`` (admin commands) is written to the store with its
  wall-clock time, and for ``open`` the wall-clock time it stays open until. The newest transition per breaker
  wins (:meth:`gateway.store.base.BreakerRecord.newer_than`), in the store and in each gateway.
- Every gateway polls the store every :data:`POLL_SECONDS` and adopts other gateways' newer transitions
  (:meth:`CircuitBreaker.adopt`): a dead agent that trips one sidecar's breaker fails fast on all of them within
  about half a second, for the rest of the same open interval (clocks are compared across hosts: skew between
  them moves the end of that interval by as much). An ``open`` whose interval has ended is not adopted.
- ``half_open`` is never shared: when the interval ends each gateway lets ``half_open_calls`` probes through
  on its own, so at most (gateways times ``half_open_calls``) probes reach the agent fleet-wide. The first gateway
  whose probes succeed publishes ``closed`` and the others close with it; one whose probes fail publishes a
  new ``open`` interval that the others adopt.
- Only a command leaves a forced state, as on one gateway: a command on one sidecar's admin API applies to all.
- Retry budgets are not shared: each sidecar limits its own retries to a ratio of its own requests.

The store failing never fails a request: transitions are written and read in the background, every breaker
keeps deciding on its local state, the snapshot says ``fleet_view: local``, a warning is logged once per
outage, ``agent_gateway_store_errors_total{operation="put_breaker"|"breaker_records"}`` counts the failures,
and unsent transitions are written once the store is back (unless a newer one came in meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from gateway.background import stop_task
from gateway.errors import StoreUnavailable
from gateway.policies.breaker import BreakerRegistry, CircuitBreaker, State
from gateway.store.base import BreakerRecord, Store, cancel_requested

log = logging.getLogger("agent_gateway.breaker")

POLL_SECONDS = 0.5
"""How often each gateway reads the fleet's transitions: the bound on how long another sidecar keeps calling
a dead agent after one sidecar opened its breaker (plus one store round trip)."""


def sidecar_id() -> str:
    """Names this gateway process in shared records: host, process id, and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class FleetBoard:
    """Connects a :class:`BreakerRegistry` to the store; :meth:`start` runs the exchange in the background."""

    def __init__(
        self, store: Store, registry: BreakerRegistry, *, wall: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:  # fmt: skip
        self._store = store
        self._registry = registry
        self._wall = wall
        self._poll = poll_seconds
        self.origin = sidecar_id()
        self.synced = True
        self._newest: dict[str, BreakerRecord] = {}
        """The newest transition known per breaker, ours or another gateway's."""
        self._unsent: dict[str, BreakerRecord] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        registry.fleet = self

    # -- the Fleet protocol (called by breakers, on the data path: no I/O here) ---------------------------

    def published(self, breaker: CircuitBreaker, *, manual: bool) -> None:
        now = self._wall()
        open_until = now + breaker.open_remaining() if breaker.state is State.OPEN else None
        record = BreakerRecord(breaker.name, breaker.state.value, now, self.origin, manual, open_until)
        self._newest[breaker.name] = self._unsent[breaker.name] = record
        self._wake.set()

    def joined(self, breaker: CircuitBreaker) -> None:
        record = self._newest.get(breaker.name)
        if record is not None and record.origin != self.origin:
            self._apply(breaker, record)

    # -- background exchange ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleet-breakers")

    async def close(self) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while not cancel_requested():
            try:
                await self.exchange()
                self._recovered()
            except StoreUnavailable:
                self._lost()
            except Exception:  # a bug must not end sharing for the life of the process
                log.exception("fleet breaker exchange failed")
                self._lost()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def exchange(self) -> None:
        """Write our unsent transitions, then adopt the fleet's newer ones (one round of the loop)."""
        for name, record in list(self._unsent.items()):
            await self._store.put_breaker(record)
            if self._unsent.get(name) is record:
                del self._unsent[name]
        for record in await self._store.breaker_records():
            if record.origin == self.origin or not record.newer_than(self._newest.get(record.name)):
                continue
            self._newest[record.name] = record
            self._unsent.pop(record.name, None)  # ours is older: the fleet has moved on
            breaker = self._registry.find(record.name)
            if breaker is not None and breaker.fleet is self:
                self._apply(breaker, record)

    def _apply(self, breaker: CircuitBreaker, record: BreakerRecord) -> None:
        open_for = 0.0 if record.open_until is None else record.open_until - self._wall()
        if record.state == State.OPEN.value and open_for <= 0:
            return  # that interval is over: this gateway's own calls decide
        log.info("breaker %s: %s by %s", breaker.name, record.state, record.origin)
        breaker.adopt(State(record.state), manual=record.manual, open_for=open_for)

    def _lost(self) -> None:
        if self.synced:
            log.warning("fleet breaker state unreachable in the store: breakers decide on local state until it is back")
        self.synced = False

    def _recovered(self) -> None:
        if not self.synced:
            log.warning("fleet breaker state reachable again: sharing resumed")
        self.synced = True
