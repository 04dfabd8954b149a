"""The data path. One inbound request flows through these steps, top to bottom::

    handle ─▶ _begin          trace context, run id (X-Run-Id, baggage run.id, or new), source agent
           ─▶ _route          which upstream, which contract version, which policy (one snapshot each)
           ─▶ _admit          per-route concurrency limit (503 + Retry-After when full)
           ─▶ _read_request   buffer the body when a contract, a retry or a checkpoint needs it; else stream
           ─▶ _check_request  schema verdict: 422 problem (enforce) or a recorded verdict (pass / shadow)
           ─▶ _check_context  stale-context verdict (409) for contracts that declare what they consume
           ─▶ checkpoint      a stored answer for this idempotency key is replayed (``X-Checkpoint: hit``)
           ─▶ attempts        ``gateway/attempts.py``: deadline, breaker, retries, each attempt being
                 send           one upstream call through the pooled session (``gateway/upstream.py``)
                 _relay         validate the response when its status has a schema (502 on violation),
                                record what it produces; otherwise stream it back untouched
           ─▶ recovery        when attempts end in failure: escalate, fall back, or reject
                              (``gateway/recovery.py``)
           ─▶ observer        audit records, metrics, one log line (``gateway/observe.py``)

Every failure is a :class:`gateway.errors.GatewayError` mapped to a problem document in exactly one place,
:meth:`Proxy._respond`, so nothing leaves as a bare 500 and nothing invalid is passed on as valid.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry import baggage
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from gateway.attempts import (
    AttemptFailed,
    AttemptFn,
    BufferedResponse,
    Failure,
    Resilience,
    action_for,
    failure_statuses,
)
from gateway.config import Limits, RouteSpec, Timeouts
from gateway.context import ContextTracker
from gateway.contracts.registry import ContractRegistry
from gateway.errors import (
    BadRequestTarget,
    BreakerOpen,
    ContractViolation,
    GatewayError,
    HeadersTooLarge,
    NoRoute,
    PayloadTooLarge,
    RouteOverloaded,
    StoreUnavailable,
    UpstreamError,
    UpstreamPayloadTooLarge,
    UpstreamTimeout,
    problem_response,
)
from gateway.exchange import Exchange
from gateway.observe import Observer
from gateway.policies.checkpoint import Checkpoints, Lease, Replay, checkpoint_key, request_digest
from gateway.policies.document import PolicySpec
from gateway.policies.registry import PolicyRegistry
from gateway.policies.retry import parse_retry_after
from gateway.recovery import Recovery
from gateway.routes import RouteRegistry
from gateway.target import canonical_target, contract_path
from gateway.telemetry import RUN_BAGGAGE, trace_id_of
from gateway.transport import (
    STREAM_CHUNK,
    downstream_response_headers,
    read_limited,
    read_request_body,
)
from gateway.upstream import UpstreamCall, prepare_call
from gateway.verdicts import CHECKPOINT_HEADER, RUN_HEADER, judge, mark

log = logging.getLogger("agent_gateway.proxy")

AGENT_HEADER = "X-Agent-Name"


@dataclass(frozen=True, slots=True)
class Collaborators:
    """What the proxy works with, assembled once in ``gateway/app.py``."""

    routes: RouteRegistry
    contracts: ContractRegistry
    policies: PolicyRegistry
    session: aiohttp.ClientSession
    limits: Limits
    timeouts: Timeouts
    tracer: Tracer
    propagator: TextMapPropagator
    observer: Observer
    context: ContextTracker
    resilience: Resilience
    checkpoints: Checkpoints
    recovery: Recovery
    keep_payloads: bool = False


class Proxy:
    """The contract-enforcing reverse proxy; ``handle`` is the aiohttp handler for every data-plane path."""

    def __init__(self, parts: Collaborators) -> None:
        self._p = parts
        self._limits = parts.limits
        self._in_flight: dict[str, int] = {}

    def in_flight(self, route: str) -> int:
        return self._in_flight.get(route, 0)

    def in_flight_by_route(self) -> dict[str, int]:
        return dict(self._in_flight)

    async def outcome(self, request: web.Request) -> web.Response:
        """Where a caller whose handoff was escalated polls for the person's answer."""
        return await self._p.recovery.outcome(request)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        exchange = self._begin(request)
        try:
            return await self._respond(exchange)
        finally:
            self._p.observer.finish(exchange)
            exchange.span.end()

    async def _respond(self, exchange: Exchange) -> web.StreamResponse:
        try:
            return await self._proxy(exchange)
        except GatewayError as exc:
            if exchange.committed:
                raise  # the status line is gone: aiohttp can only cut the connection, which tells the caller
            return self.reject(exchange, exc)
        except Exception:
            if exchange.committed:
                raise
            log.exception("unexpected failure", extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id})
            return self.reject(exchange, GatewayError("The gateway failed unexpectedly; see its logs."))

    async def _proxy(self, exchange: Exchange) -> web.StreamResponse:
        self._check_head(exchange.request)
        route = self._route(exchange)
        policy = self._p.policies.table.lookup(route.name, exchange.contract.id if exchange.contract else None)
        self._admit(route)
        self._in_flight[route.name] = self._in_flight.get(route.name, 0) + 1
        try:
            key = checkpoint_key(
                route.name, exchange.request.method, exchange.path, exchange.request.headers, policy.checkpoint
            )
            body = await self._read_request(exchange, policy, key is not None)
            try:
                document = await self._check_request(exchange, body)
                await self._check_context(exchange, document, policy)
            except ContractViolation as refused:
                return await self._refused_request(exchange, refused, policy, body, key)
            exchange.request_verdict = exchange.verdict
            claim = None if key is None else await self._claim(exchange, key, body, policy)
            if isinstance(claim, Replay):
                return self._replay(exchange, claim)
            if claim is None:
                return await self._attempts(exchange, policy, body, None)
            async with claim:  # renewed while the call runs; released if it ends in an exception
                return await self._attempts(exchange, policy, body, claim)
        finally:
            self._in_flight[route.name] -= 1

    async def _claim(
        self, exchange: Exchange, key: str, body: bytes | None, policy: PolicySpec
    ) -> Replay | Lease | None:
        """The stored answer to replay, or this call's lease on ``key``; ``None`` when the store failed and the
        policy says ``bypass`` (every answer then says ``X-Checkpoint: bypass``). ``refuse`` → 503."""
        try:
            return await self._p.checkpoints.begin(key, request_digest(body), policy.checkpoint)
        except StoreUnavailable:
            if policy.checkpoint.on_store_error == "refuse":
                raise
            exchange.checkpoint = "bypass"
            return None

    async def _attempts(
        self, exchange: Exchange, policy: PolicySpec, body: bytes | None, lease: Lease | None
    ) -> web.StreamResponse:
        """Attempts under the policy, then recovery if they fail. Only an agent's validated answer becomes the
        checkpoint (``lease``: this call's claim on the key); an escalated or fallback answer never does."""
        try:
            response = await self._p.resilience.run(exchange, policy, self._attempt_fn(exchange, policy, body))
        except Failure as failure:
            if lease is not None:
                await lease.release()
            key = lease.key if lease is not None else None
            return await self._p.recovery.recover(self, exchange, failure, policy, body, key)
        if lease is not None:
            await self._store_checkpoint(exchange, lease, response)
        return response

    def _attempt_fn(self, exchange: Exchange, policy: PolicySpec, body: bytes | None) -> AttemptFn:
        async def attempt(number: int, budget: float | None, final: bool) -> web.StreamResponse:
            return await self._attempt(exchange, policy, body, budget, final)

        return attempt

    async def _refused_request(
        self, exchange: Exchange, refused: ContractViolation, policy: PolicySpec, body: bytes | None, key: str | None
    ) -> web.StreamResponse:
        """A request the contract refused (invalid, or built on stale context) is never sent upstream; the
        declared ``escalate`` or ``fallback`` is carried out, anything else answers with the problem."""
        verdict = exchange.verdict or "request_invalid"
        action = exchange.contract.spec.action(verdict) if exchange.contract else "reject"
        if action not in ("escalate", "fallback"):
            raise refused
        failure = Failure(AttemptFailed(verdict, refused), action, attempts=0)
        return await self._p.recovery.recover(self, exchange, failure, policy, body, key)

    # -- steps ---------------------------------------------------------------------------------------------

    def _begin(self, request: web.Request) -> Exchange:
        parent = self._p.propagator.extract(request.headers)
        run_id = request.headers.get(RUN_HEADER) or baggage.get_baggage(RUN_BAGGAGE, parent)
        run_id = str(run_id) if run_id else f"{random.getrandbits(64):016x}"  # an id, not a secret
        span = self._p.tracer.start_span(request.method, context=parent, kind=SpanKind.SERVER)
        source = request.headers.get(AGENT_HEADER, "unknown")
        if span.is_recording():
            span.set_attributes({"run.id": run_id, "agent.source": source})
        return Exchange(request, span, trace_id_of(span), run_id, source)

    def _check_head(self, request: web.Request) -> None:
        """The header block within ``limits.max_header_bytes`` (the parser bounds each line, not the sum)."""
        size = len(request.raw_path) + sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
        if size > self._limits.max_header_bytes:
            raise HeadersTooLarge(f"The request head is {size} bytes; the limit is {self._limits.max_header_bytes}.")

    def _route(self, exchange: Exchange) -> RouteSpec:
        request = exchange.request
        target = canonical_target(request.raw_path)
        exchange.query = target.query
        matched = self._p.routes.table.match(target.path)
        if matched is None:
            raise NoRoute(target.path)
        route, exchange.path = matched
        if target.has_escaped_slash and route.escaped_slashes == "reject":
            raise BadRequestTarget(f"Route {route.name!r} refuses an encoded '/' or '\\' inside a path segment.")
        exchange.route = route
        exchange.contract = self._p.contracts.table.find(route.name, request.method, contract_path(exchange.path))
        span = exchange.span
        if span.is_recording():
            template = exchange.contract.spec.operation.path if exchange.contract else route.effective_prefix
            span.update_name(f"{request.method} {route.name} {template or '/'}")
            span.set_attributes(
                {"http.request.method": request.method, "url.path": target.path,
                 "http.route": template or "/", "agent.target": route.name}
            )  # fmt: skip
            if exchange.contract is not None:
                span.set_attributes(
                    {"contract.id": exchange.contract.id, "contract.version": exchange.contract.version}
                )
        return route

    def _admit(self, route: RouteSpec) -> None:
        limit = route.max_concurrency or self._limits.max_concurrency_per_route
        if self._in_flight.get(route.name, 0) >= limit:
            raise RouteOverloaded(route.name, limit)

    async def _read_request(self, exchange: Exchange, policy: PolicySpec, keyed: bool) -> bytes | None:
        """The whole body when a contract, a possible retry or a checkpoint needs it; ``None`` = stream it."""
        contract = exchange.contract
        length = exchange.request.content_length
        if length is not None and length > self._limits.max_body_bytes:
            raise PayloadTooLarge(self._limits.max_body_bytes)
        needed = keyed or policy.retry is not None or (contract is not None and contract.buffers_request)
        if not needed or not exchange.request.body_exists:
            return None
        exchange.request_body = await read_request_body(
            exchange.request, self._limits.max_body_bytes, self._p.timeouts.client_idle
        )
        return exchange.request_body

    async def _check_request(self, exchange: Exchange, body: bytes | None) -> Any:
        """The parsed body (kept on the exchange only if the audit keeps payloads: a parsed 100 KiB document is
        thousands of objects the garbage collector would otherwise keep scanning). A body of
        ``limits.offload_bytes`` or more is parsed and checked in a worker thread, off the event loop."""
        contract = exchange.contract
        if contract is None:
            return None
        limits = self._limits
        document, (violations, total) = await contract.check_request_off_loop(
            exchange.request, body, limits.max_violations, limits.offload_bytes
        )
        if self._p.keep_payloads:
            exchange.request_document = document
        judge(exchange, contract, "request", violations, total)
        return document

    async def _check_context(self, exchange: Exchange, document: Any, policy: PolicySpec) -> None:
        contract = exchange.contract
        if contract is None or contract.spec.consumes is None:
            return
        try:
            stale = await self._p.context.check(
                exchange.run_id, contract.spec.consumes, document, exchange.request.headers
            )
        except StoreUnavailable:
            if policy.context.on_store_error == "refuse":
                raise  # 503: a request is never passed on as checked when it was not
            exchange.notes.append("context=unchecked")
            return
        if stale is not None:
            judge(exchange, contract, "request", (stale,), 1, verdict="stale_context")

    async def _attempt(
        self, exchange: Exchange, policy: PolicySpec, body: bytes | None, budget: float | None, final: bool
    ) -> web.StreamResponse:
        """One attempt within ``budget`` seconds; failures become :class:`AttemptFailed` for the retry loop."""
        assert exchange.route is not None
        try:
            async with self.send(exchange, exchange.route, body, budget) as upstream:
                return await self._relay(exchange, upstream, policy, final)
        except ContractViolation as exc:
            if exchange.committed:
                raise
            raise AttemptFailed("response_invalid", exc) from exc
        except (UpstreamTimeout, UpstreamError) as exc:
            if exchange.committed:
                raise
            raise AttemptFailed("timeout" if isinstance(exc, UpstreamTimeout) else "upstream_error", exc) from exc

    def send(
        self, exchange: Exchange, route: RouteSpec, body: bytes | None, budget: float | None = None
    ) -> UpstreamCall:
        """One call to ``route`` (the exchange's own, or a fallback's) within ``budget`` seconds."""
        return prepare_call(
            session=self._p.session, tracer=self._p.tracer, limits=self._limits, timeouts=self._p.timeouts,
            exchange=exchange, route=route, body=body, budget=budget,
        )  # fmt: skip

    async def _relay(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, policy: PolicySpec, final: bool
    ) -> web.StreamResponse:
        exchange.span.set_attribute("http.response.status_code", upstream.status)
        exchange.status = upstream.status
        headers = downstream_response_headers(upstream)
        if upstream.status in failure_statuses(policy) and self._status_fails(exchange, policy, final):
            raise await self._failed_status(exchange, upstream, headers)
        contract = exchange.contract
        schema = contract.response_schema(upstream.status) if contract else None
        if schema is None or contract is None:
            return await self._stream_back(exchange, upstream, headers)
        body = await read_limited(upstream, self._limits.max_body_bytes)
        exchange.upstream_seconds = exchange.attempt_seconds
        if body is None:
            raise UpstreamPayloadTooLarge(self._limits.max_body_bytes)
        exchange.response_body = body
        encoding = upstream.headers.get("Content-Encoding")
        document, (violations, total) = await contract.check_response_off_loop(
            schema, body, upstream.content_type, encoding, self._limits.max_violations, self._limits.offload_bytes
        )
        if self._p.keep_payloads:
            exchange.response_document = document
        judge(exchange, contract, "response", violations, total)
        if contract.spec.produces is not None and 200 <= upstream.status < 300:
            await self._p.context.record(exchange.run_id, contract.spec.produces, document, headers)
        mark(exchange, headers)
        return web.Response(body=body, status=upstream.status, reason=upstream.reason, headers=headers)

    # -- helpers -------------------------------------------------------------------------------------------

    @staticmethod
    def _status_fails(exchange: Exchange, policy: PolicySpec, final: bool) -> bool:
        """Whether a listed 5xx is a failure to act on, rather than an answer to relay as it is."""
        action = action_for("upstream_error", exchange.contract, policy)
        if action == "retry" and final:
            action = policy.retry.exhausted if policy.retry is not None else "reject"
        return action in ("retry", "escalate", "fallback")

    async def _failed_status(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, headers: aiohttp.typedefs.LooseHeaders
    ) -> AttemptFailed:
        body = await read_limited(upstream, self._limits.max_body_bytes) or b""
        exchange.upstream_seconds = exchange.attempt_seconds
        exchange.response_body = body
        route = exchange.route.name if exchange.route else "?"
        error = UpstreamError(route, f"Upstream {route!r} answered {upstream.status}.")
        kept = BufferedResponse(upstream.status, upstream.reason, headers, body)  # type: ignore[arg-type]
        return AttemptFailed(
            "upstream_error", error, retry_after=parse_retry_after(upstream.headers.get("Retry-After")), response=kept
        )

    async def _stream_back(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, headers: aiohttp.typedefs.LooseHeaders
    ) -> web.StreamResponse:
        mark(exchange, headers)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if upstream.content_length is not None:
            if upstream.content_length > self._limits.max_body_bytes:
                raise UpstreamPayloadTooLarge(self._limits.max_body_bytes)
            response.content_length = upstream.content_length
        exchange.committed = True
        await response.prepare(exchange.request)
        relayed = 0
        async for chunk in upstream.content.iter_chunked(STREAM_CHUNK):
            relayed += len(chunk)
            if relayed > self._limits.max_body_bytes:  # only a cut connection can say so now
                raise UpstreamPayloadTooLarge(self._limits.max_body_bytes)
            await response.write(chunk)
        await response.write_eof()
        exchange.upstream_seconds = exchange.attempt_seconds
        return response

    def _replay(self, exchange: Exchange, replay: Replay) -> web.Response:
        exchange.checkpoint = "hit"
        exchange.status = replay.status
        exchange.verdict = exchange.verdict or "valid"
        headers = dict(replay.headers)
        mark(exchange, headers)
        return web.Response(body=replay.body, status=replay.status, headers=headers)

    async def _store_checkpoint(self, exchange: Exchange, lease: Lease, response: web.StreamResponse) -> None:
        """Keep a validated answer under the lease's key. A store that fails now must not cost the caller the
        answer the agent already gave: it is relayed, marked ``X-Checkpoint: bypass`` (not stored)."""
        body = exchange.response_body if isinstance(response, web.Response) else None
        try:
            stored = await lease.complete(response.status, response.headers, body)
        except StoreUnavailable:
            exchange.checkpoint = "bypass"
            response.headers[CHECKPOINT_HEADER] = "bypass"
            return
        if stored:
            exchange.checkpoint = "stored"
            response.headers[CHECKPOINT_HEADER] = "stored"

    def reject(self, exchange: Exchange, error: GatewayError) -> web.Response:
        status = error.status_code()
        exchange.status = status
        exchange.span.set_attribute("http.response.status_code", status)
        if isinstance(error, BreakerOpen):
            exchange.verdict = "breaker_open"
        elif isinstance(error, UpstreamError):
            exchange.verdict = "upstream_timeout" if isinstance(error, UpstreamTimeout) else "upstream_error"
        if status >= 500:
            exchange.span.set_status(StatusCode.ERROR, error.detail)
        headers: dict[str, str] = {}
        mark(exchange, headers)
        return problem_response(error, exchange.trace_id, headers)
