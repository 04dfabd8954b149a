"""The data path. One inbound request flows through these steps, top to bottom::

    handle ─▶ _begin          trace context, run id (X-Run-Id, baggage run.id, or new), source agent
           ─▶ _route          which upstream, which contract version (one snapshot for the whole request)
           ─▶ _admit          per-route concurrency limit (503 + Retry-After when full)
           ─▶ _read_request   buffer the body only when a contract must see it; else stream it
           ─▶ _check_request  schema verdict: 422 problem (enforce) or a recorded verdict (pass / shadow)
           ─▶ _check_context  stale-context verdict (409) for contracts that declare what they consume
           ─▶ _send           one upstream attempt through the pooled session, trace context injected
           ─▶ _relay          validate the response when its status has a schema (502 on violation) and
                              record what it produces, otherwise stream it back untouched
           ─▶ observer        audit record, metrics, one log line (``gateway/observe.py``)

Every failure is a :class:`gateway.errors.GatewayError` mapped to a problem document in exactly one place,
:meth:`Proxy._respond`, so nothing leaves as a bare 500 and nothing invalid is passed on as valid.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web
from opentelemetry import baggage, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from yarl import URL

from gateway.config import Limits, RouteSpec
from gateway.context import ContextTracker
from gateway.contracts.registry import ContractRegistry
from gateway.contracts.validation import CompiledContract
from gateway.errors import (
    ContractViolation,
    Direction,
    GatewayError,
    NoRoute,
    PayloadTooLarge,
    RouteOverloaded,
    UpstreamError,
    UpstreamPayloadTooLarge,
    UpstreamTimeout,
    Violation,
    problem_response,
)
from gateway.exchange import Exchange
from gateway.observe import Observer
from gateway.routes import RouteRegistry
from gateway.telemetry import trace_id_of
from gateway.transport import (
    STREAM_CHUNK,
    downstream_response_headers,
    read_limited,
    stream_request_body,
    upstream_request_headers,
    upstream_url,
)

log = logging.getLogger("agent_gateway.proxy")

VERDICT_HEADER = "X-Contract-Verdict"
RUN_HEADER = "X-Run-Id"
AGENT_HEADER = "X-Agent-Name"
RUN_BAGGAGE = "run.id"
LARGE_BODY = 1024 * 1024


class Proxy:
    """The contract-enforcing reverse proxy; ``handle`` is the aiohttp handler for every data-plane path."""

    def __init__(
        self,
        *,
        routes: RouteRegistry,
        contracts: ContractRegistry,
        session: aiohttp.ClientSession,
        limits: Limits,
        tracer: Tracer,
        propagator: TextMapPropagator,
        observer: Observer,
        context: ContextTracker,
    ) -> None:
        self._routes = routes
        self._contracts = contracts
        self._session = session
        self._limits = limits
        self._tracer = tracer
        self._propagator = propagator
        self._observer = observer
        self._context = context
        self._in_flight: dict[str, int] = {}

    def in_flight(self, route: str) -> int:
        return self._in_flight.get(route, 0)

    def in_flight_by_route(self) -> dict[str, int]:
        return dict(self._in_flight)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        exchange = self._begin(request)
        try:
            return await self._respond(exchange)
        finally:
            self._observer.finish(exchange)
            exchange.span.end()

    async def _respond(self, exchange: Exchange) -> web.StreamResponse:
        try:
            return await self._proxy(exchange)
        except GatewayError as exc:
            if exchange.committed:
                raise  # the status line is gone: aiohttp can only cut the connection, which tells the caller
            return self._reject(exchange, exc)
        except Exception:
            if exchange.committed:
                raise
            log.exception("unexpected failure", extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id})
            return self._reject(exchange, GatewayError("The gateway failed unexpectedly; see its logs."))

    async def _proxy(self, exchange: Exchange) -> web.StreamResponse:
        route = self._route(exchange)
        self._admit(route)
        self._in_flight[route.name] = self._in_flight.get(route.name, 0) + 1
        try:
            body = await self._read_request(exchange)
            self._check_request(exchange, body)
            await self._check_context(exchange)
            async with self._send(exchange, body) as upstream:
                return await self._relay(exchange, upstream)
        finally:
            self._in_flight[route.name] -= 1

    # -- steps ---------------------------------------------------------------------------------------------

    def _begin(self, request: web.Request) -> Exchange:
        parent = self._propagator.extract(request.headers)
        run_id = request.headers.get(RUN_HEADER) or baggage.get_baggage(RUN_BAGGAGE, parent)
        generated = not run_id
        run_id = str(run_id) if run_id else secrets.token_hex(8)
        span = self._tracer.start_span(request.method, context=parent, kind=SpanKind.SERVER)
        source = request.headers.get(AGENT_HEADER, "unknown")
        if span.is_recording():
            span.set_attributes({"run.id": run_id, "agent.source": source})
        return Exchange(request, span, trace_id_of(span), run_id, generated, source)

    def _route(self, exchange: Exchange) -> RouteSpec:
        request = exchange.request
        raw_path, _, exchange.query = request.raw_path.partition("?")
        matched = self._routes.table.match(raw_path)
        if matched is None:
            raise NoRoute(request.path)
        route, exchange.path = matched
        exchange.route = route
        exchange.contract = self._contracts.table.find(route.name, request.method, exchange.path)
        span = exchange.span
        if span.is_recording():
            template = exchange.contract.spec.operation.path if exchange.contract else route.effective_prefix
            span.update_name(f"{request.method} {route.name} {template or '/'}")
            span.set_attributes(
                {"http.request.method": request.method, "url.path": request.path,
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

    async def _read_request(self, exchange: Exchange) -> bytes | None:
        """The whole body when a contract will validate it; ``None`` means stream it through."""
        contract = exchange.contract
        if contract is None or not contract.buffers_request:
            length = exchange.request.content_length
            if length is not None and length > self._limits.max_body_bytes:
                raise PayloadTooLarge(self._limits.max_body_bytes)
            return None
        try:
            exchange.request_body = await exchange.request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise PayloadTooLarge(self._limits.max_body_bytes) from exc
        return exchange.request_body

    def _check_request(self, exchange: Exchange, body: bytes | None) -> None:
        contract = exchange.contract
        if contract is None:
            return
        exchange.request_document, (violations, total) = contract.check_request(
            exchange.request, body, self._limits.max_violations
        )
        self._judge(exchange, contract, "request", violations, total)

    async def _check_context(self, exchange: Exchange) -> None:
        contract = exchange.contract
        if contract is None or contract.spec.consumes is None:
            return
        stale = await self._context.check(
            exchange.run_id, contract.spec.consumes, exchange.request_document, exchange.request.headers
        )
        if stale is not None:
            self._judge(exchange, contract, "request", (stale,), 1, verdict="stale_context")

    def _send(self, exchange: Exchange, body: bytes | None) -> _UpstreamCall:
        assert exchange.route is not None
        request = exchange.request
        streamed = body is None
        headers = upstream_request_headers(request, keep_length=streamed)
        headers[RUN_HEADER] = exchange.run_id
        if exchange.contract is not None and exchange.contract.responses:
            headers["Accept-Encoding"] = "identity"  # the gateway must be able to read what it validates
        data: AsyncIterator[bytes] | io.BytesIO | bytes | None = body
        if streamed and request.body_exists:
            data = stream_request_body(request, self._limits.max_body_bytes)
        elif body is not None and len(body) > LARGE_BODY:
            data = io.BytesIO(body)  # aiohttp writes large bytes in one go and warns; BytesIO is sent in chunks
        url = upstream_url(exchange.route.upstream, exchange.path, exchange.query)
        return _UpstreamCall(self, exchange, request.method, url, headers, data)

    async def _relay(self, exchange: Exchange, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        exchange.span.set_attribute("http.response.status_code", upstream.status)
        exchange.status = upstream.status
        headers = downstream_response_headers(upstream)
        contract = exchange.contract
        schema = contract.response_schema(upstream.status) if contract else None
        if schema is None or contract is None:
            return await self._stream_back(exchange, upstream, headers)
        body = await read_limited(upstream, self._limits.max_body_bytes)
        exchange.upstream_seconds = time.perf_counter() - exchange.upstream_started
        if body is None:
            raise UpstreamPayloadTooLarge(self._limits.max_body_bytes)
        exchange.response_body = body
        encoding = upstream.headers.get("Content-Encoding")
        exchange.response_document, (violations, total) = contract.check_response(
            schema, body, upstream.content_type, encoding, self._limits.max_violations
        )
        self._judge(exchange, contract, "response", violations, total)
        if contract.spec.produces is not None and 200 <= upstream.status < 300:
            await self._context.record(exchange.run_id, contract.spec.produces, exchange.response_document, headers)
        self._mark(exchange, headers)
        return web.Response(body=body, status=upstream.status, reason=upstream.reason, headers=headers)

    # -- helpers -------------------------------------------------------------------------------------------

    def _judge(
        self,
        exchange: Exchange,
        contract: CompiledContract,
        direction: Direction,
        violations: Sequence[Violation],
        total: int,
        *,
        verdict: str | None = None,
    ) -> None:
        """Record the verdict; raise the violation unless the contract says to let it pass."""
        if not total:
            exchange.verdict = exchange.verdict or "valid"
            exchange.span.set_attribute("contract.verdict", exchange.verdict)
            return
        verdict = verdict or f"{direction}_invalid"
        exchange.verdict = verdict
        exchange.add_violations(direction, tuple(violations), total)
        exchange.span.set_attributes({"contract.verdict": verdict, "contract.violations": exchange.violation_count})
        if contract.spec.action(verdict) == "pass":
            exchange.notes.append(f"{verdict.replace('_invalid', '')}_violations={total}")
            log.warning(
                "contract %s v%d: %s passed on (%s): %d violation(s), first at %r: %s",
                contract.id, contract.version, verdict, contract.spec.mode, total,
                violations[0].pointer, violations[0].message,
                extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id},
            )  # fmt: skip
            return
        raise ContractViolation(
            contract=contract.id,
            version=contract.version,
            direction=direction,
            violations=violations,
            total=total,
            stale=verdict == "stale_context",
        )

    def _mark(self, exchange: Exchange, headers: aiohttp.typedefs.LooseHeaders) -> None:
        """Verdict and run id headers on whatever goes back to the caller."""
        headers[RUN_HEADER] = exchange.run_id  # type: ignore[index]
        contract = exchange.contract
        if contract is None or exchange.verdict is None:
            return
        parts = [exchange.verdict, f"contract={contract.id}", f"version={contract.version}", *exchange.notes]
        headers[VERDICT_HEADER] = "; ".join(parts)  # type: ignore[index]

    async def _stream_back(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, headers: aiohttp.typedefs.LooseHeaders
    ) -> web.StreamResponse:
        self._mark(exchange, headers)
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
        exchange.upstream_seconds = time.perf_counter() - exchange.upstream_started
        return response

    def _reject(self, exchange: Exchange, error: GatewayError) -> web.Response:
        status = error.status_code()
        exchange.status = status
        exchange.span.set_attribute("http.response.status_code", status)
        if isinstance(error, UpstreamError):
            exchange.verdict = "upstream_timeout" if isinstance(error, UpstreamTimeout) else "upstream_error"
        if status >= 500:
            exchange.span.set_status(StatusCode.ERROR, error.detail)
        headers: dict[str, str] = {}
        self._mark(exchange, headers)
        return problem_response(error, exchange.trace_id, headers)


class _UpstreamCall:
    """One upstream attempt as an async context manager: a CLIENT span (when sampled), trace context and
    run id injected, and every transport failure mapped to a :class:`GatewayError` raised ``from`` it."""

    def __init__(
        self,
        proxy: Proxy,
        exchange: Exchange,
        method: str,
        url: URL,
        headers: aiohttp.typedefs.LooseHeaders,
        data: object,
    ) -> None:
        self._proxy = proxy
        self._exchange = exchange
        self._method = method
        self._url = url
        self._headers = headers
        self._data = data
        self._response: aiohttp.ClientResponse | None = None
        self._span: trace.Span | None = None

    @property
    def _route(self) -> str:
        return self._exchange.route.name if self._exchange.route else "?"

    async def __aenter__(self) -> aiohttp.ClientResponse:
        proxy, exchange = self._proxy, self._exchange
        context = baggage.set_baggage(RUN_BAGGAGE, exchange.run_id, trace.set_span_in_context(exchange.span))
        if exchange.span.is_recording():
            self._span = proxy._tracer.start_span(self._method, context=context, kind=SpanKind.CLIENT)
            self._span.set_attributes(
                {"http.request.method": self._method, "url.full": str(self._url), "retry.attempt": 1,
                 "run.id": exchange.run_id, "agent.target": self._route}
            )  # fmt: skip
            context = trace.set_span_in_context(self._span, context)
        proxy._propagator.inject(self._headers, context=context)
        exchange.upstream_started = time.perf_counter()
        try:
            self._response = await proxy._session.request(
                self._method, self._url, headers=self._headers, data=self._data, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            self._fail(exc)
            raise UpstreamTimeout(self._route, f"Upstream {self._route!r} did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            self._fail(exc)
            raise UpstreamError(self._route, f"Cannot connect to upstream {self._route!r}: {exc.os_error}.") from exc
        except aiohttp.ClientError as exc:
            self._fail(exc)
            if isinstance(exc.__cause__, PayloadTooLarge):  # raised by our body stream, wrapped by aiohttp
                raise exc.__cause__ from exc
            raise UpstreamError(self._route, f"Upstream {self._route!r} failed: {type(exc).__name__}: {exc}.") from exc
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", self._response.status)
        return self._response

    def _fail(self, exc: BaseException) -> None:
        exchange = self._exchange
        exchange.upstream_seconds = time.perf_counter() - exchange.upstream_started
        if self._span is not None:
            self._span.record_exception(exc)
            self._span.set_status(StatusCode.ERROR, type(exc).__name__)
            self._span.end()
            self._span = None

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._response is not None:
            self._response.release()
        if self._span is not None:
            if isinstance(exc, TimeoutError | aiohttp.ClientError):
                self._span.set_status(StatusCode.ERROR, type(exc).__name__)
            self._span.end()
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(self._route, f"Upstream {self._route!r} stopped sending mid-response.") from exc
        if isinstance(exc, aiohttp.ClientError):
            detail = f"Upstream {self._route!r} broke off its response: {type(exc).__name__}."
            raise UpstreamError(self._route, detail) from exc
