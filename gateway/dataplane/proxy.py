"""The data path, composed in one place. A request travels the stages top to bottom, and its answer back up::

    Observe        trace context, run id, source agent; audit record, metrics, log line   (front.py)
    Respond        every refusal becomes a problem document, here and nowhere else        (front.py)
    Route          header budget, canonical path, route, contract, policy, checkpoint key (routing.py)
    Admit          the route's concurrency limit (503 + Retry-After)                      (routing.py)
    ReadBody       buffer the body when a contract, a retry or a checkpoint needs it      (routing.py)
    MatchRpc       a JSON-RPC body: each call paired with its method's (or tool's) contract (rpc.py)
    Recover        a failed handoff: escalate, fall back (through the Upstream), reject   (recover.py)
    CheckRequest   request schemas and stale context (422 / 409, or a Failure to recover) (check.py)
    Checkpoint     replay a stored answer, or hold the key and store the valid answer     (checkpoint.py)
    Attempts       deadline, circuit breaker, retries; the only place a failure is final  (attempts.py)
    Relay          one call through the Upstream; check the answer; stream or relay it    (relay.py)

Each stage is ``async (exchange, call_next) -> response`` (``chain.py``); none imports another. The handoff's
headers are stamped in one place as any answer is prepared (:func:`gateway.dataplane.front.stamp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Tracer

from gateway.config import Limits, Timeouts
from gateway.contracts.context import ContextTracker
from gateway.contracts.registry import ContractRegistry
from gateway.control.routes import RouteRegistry
from gateway.dataplane.attempts import Attempts
from gateway.dataplane.chain import Next, Stage, compose
from gateway.dataplane.check import CheckRequest
from gateway.dataplane.checkpoint import Checkpoint
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.front import Observe, Respond
from gateway.dataplane.recover import Recover
from gateway.dataplane.relay import Relay
from gateway.dataplane.routing import Admit, ReadBody, Route
from gateway.dataplane.rpc import MatchRpc
from gateway.dataplane.upstream import Upstream
from gateway.observability.observe import Observer
from gateway.policies.breaker import BreakerRegistry
from gateway.policies.checkpoint import Checkpoints
from gateway.policies.escalation import Escalations
from gateway.policies.registry import PolicyRegistry
from gateway.redaction import Redactor


@dataclass(frozen=True, slots=True)
class Parts:
    """What the stages are built from, assembled once in ``gateway/app.py``."""

    routes: RouteRegistry
    contracts: ContractRegistry
    policies: PolicyRegistry
    upstream: Upstream
    limits: Limits
    timeouts: Timeouts
    tracer: Tracer
    propagator: TextMapPropagator
    observer: Observer
    context: ContextTracker
    breakers: BreakerRegistry
    checkpoints: Checkpoints
    escalations: Escalations
    redactor: Redactor
    keep_payloads: bool = False


class Proxy:
    """The aiohttp handler for every data-plane path: builds the chain once, runs it per request."""

    def __init__(self, parts: Parts, *, attempts: Attempts | None = None) -> None:
        self.admit = Admit(parts.limits)
        self.attempts = attempts or Attempts(parts.breakers)
        stages: list[Stage] = [
            Observe(parts.tracer, parts.propagator, parts.observer),
            Respond(),
            Route(parts.routes, parts.contracts, parts.policies, parts.limits),
            self.admit,
            ReadBody(parts.limits, parts.timeouts),
            MatchRpc(parts.contracts, parts.policies),
            Recover(parts.escalations, parts.routes, parts.upstream, parts.redactor, parts.limits),
            CheckRequest(parts.context, parts.limits, keep_payloads=parts.keep_payloads),
            Checkpoint(parts.checkpoints),
            self.attempts,
        ]
        self._chain: Next = compose(stages, Relay(parts.upstream, parts.context, parts.limits, parts.redactor,
                                                  keep_payloads=parts.keep_payloads))  # fmt: skip

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self._chain(Exchange(request))
