"""The data path. One inbound request flows through these steps, top to bottom::

    handle ─▶ _route          which upstream, which contract version (one snapshot for the whole request)
           ─▶ _admit          per-route concurrency limit (503 + Retry-After when full)
           ─▶ _read_request   buffer the body only when a contract must see it; else stream it
           ─▶ _check_request  422 problem (enforce) or a recorded verdict (pass / shadow)
           ─▶ _send           one upstream attempt through the pooled session, trace context injected
           ─▶ _relay          validate the response when its status has a schema (502 on violation),
                              otherwise stream it back untouched

Every failure is a :class:`gateway.errors.GatewayError` mapped to a problem document in exactly one place,
:meth:`Proxy.handle`, so nothing leaves as a bare 500 and nothing invalid is passed on as valid.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from yarl import URL

from gateway.config import Limits, RouteSpec
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
LARGE_BODY = 1024 * 1024


@dataclass(slots=True)
class Exchange:
    """What the steps of one request share."""

    request: web.Request
    span: Span
    trace_id: str
    route: RouteSpec | None = None
    path: str = "/"
    query: str = ""
    """Percent-encoded as received: the gateway never re-quotes what it forwards."""
    contract: CompiledContract | None = None
    verdict: str | None = None
    notes: list[str] = field(default_factory=list)
    committed: bool = False
    """True once response headers were sent: a later failure can only abort the connection."""


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
    ) -> None:
        self._routes = routes
        self._contracts = contracts
        self._session = session
        self._limits = limits
        self._tracer = tracer
        self._propagator = propagator
        self._in_flight: dict[str, int] = {}

    def in_flight(self, route: str) -> int:
        return self._in_flight.get(route, 0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parent = self._propagator.extract(request.headers)
        span = self._tracer.start_span(request.method, context=parent, kind=SpanKind.SERVER)
        exchange = Exchange(request, span, trace_id_of(span))
        try:
            return await self._proxy(exchange)
        except GatewayError as exc:
            if exchange.committed:
                raise  # the status line is gone: aiohttp can only cut the connection, which tells the caller
            return self._reject(exchange, exc)
        except Exception:
            if exchange.committed:
                raise
            log.exception("unexpected failure on %s %s", request.method, request.path, extra=self._log_ids(exchange))
            return self._reject(exchange, GatewayError("The gateway failed unexpectedly; see its logs."))
        finally:
            span.end()

    async def _proxy(self, exchange: Exchange) -> web.StreamResponse:
        self._route(exchange)
        assert exchange.route is not None
        route = exchange.route.name
        self._admit(exchange.route)
        self._in_flight[route] = self._in_flight.get(route, 0) + 1
        try:
            body = await self._read_request(exchange)
            self._check_request(exchange, body)
            async with self._send(exchange, body) as upstream:
                return await self._relay(exchange, upstream)
        finally:
            self._in_flight[route] -= 1

    # -- steps ---------------------------------------------------------------------------------------------

    def _route(self, exchange: Exchange) -> None:
        request = exchange.request
        raw_path, _, exchange.query = request.raw_path.partition("?")
        matched = self._routes.table.match(raw_path)
        if matched is None:
            raise NoRoute(request.path)
        exchange.route, exchange.path = matched
        exchange.contract = self._contracts.table.find(matched[0].name, request.method, matched[1])
        span = exchange.span
        if not span.is_recording():
            return  # unsampled: skip building names and attributes nobody will see
        template = exchange.contract.spec.operation.path if exchange.contract else exchange.route.effective_prefix
        span.update_name(f"{request.method} {exchange.route.name} {template or '/'}")
        span.set_attributes(
            {
                "http.request.method": request.method,
                "url.path": request.path,
                "http.route": template or "/",
                "agent.target": exchange.route.name,
                "agent.source": request.headers.get("X-Agent-Name", "unknown"),
            }
        )
        if exchange.contract is not None:
            span.set_attributes({"contract.id": exchange.contract.id, "contract.version": exchange.contract.version})

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
            return await exchange.request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise PayloadTooLarge(self._limits.max_body_bytes) from exc

    def _check_request(self, exchange: Exchange, body: bytes | None) -> None:
        contract = exchange.contract
        if contract is None:
            return
        violations, total = contract.check_request(exchange.request, body, self._limits.max_violations)
        self._judge(exchange, contract, "request", violations, total)

    def _send(self, exchange: Exchange, body: bytes | None) -> _UpstreamCall:
        assert exchange.route is not None
        request = exchange.request
        streamed = body is None
        headers = upstream_request_headers(request, keep_length=streamed)
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
        headers = downstream_response_headers(upstream)
        schema = exchange.contract.response_schema(upstream.status) if exchange.contract else None
        if schema is None or exchange.contract is None:
            return await self._stream_back(exchange, upstream, headers)
        body = await read_limited(upstream, self._limits.max_body_bytes)
        if body is None:
            raise UpstreamPayloadTooLarge(self._limits.max_body_bytes)
        violations, total = exchange.contract.check_response(
            schema,
            body,
            upstream.content_type,
            upstream.headers.get("Content-Encoding"),
            self._limits.max_violations,
        )
        self._judge(exchange, exchange.contract, "response", violations, total)
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
    ) -> None:
        """Record the verdict; raise the violation unless the contract says to let it pass."""
        if not total:
            if exchange.verdict is None:
                exchange.verdict = "valid"
            exchange.span.set_attribute("contract.verdict", exchange.verdict)
            return
        verdict = f"{direction}_invalid"
        exchange.verdict = verdict
        exchange.span.set_attributes({"contract.verdict": verdict, "contract.violations": total})
        action = contract.spec.action(verdict)
        if action == "pass":
            exchange.notes.append(f"{direction}_violations={total}")
            log.warning(
                "contract %s v%d: %s passed on (%s): %d violation(s), first at %r: %s",
                contract.id, contract.version, verdict, contract.spec.mode, total,
                violations[0].pointer, violations[0].message, extra=self._log_ids(exchange),
            )  # fmt: skip
            return
        raise ContractViolation(
            contract=contract.id,
            version=contract.version,
            direction=direction,
            violations=violations,
            total=total,
        )

    def _mark(self, exchange: Exchange, headers: aiohttp.typedefs.LooseHeaders) -> None:
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
        return response

    def _reject(self, exchange: Exchange, error: GatewayError) -> web.Response:
        status = error.status_code()
        exchange.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            exchange.span.set_status(StatusCode.ERROR, error.detail)
        extra = {}
        if exchange.contract is not None and exchange.verdict is not None:
            extra[VERDICT_HEADER] = (
                f"{exchange.verdict}; contract={exchange.contract.id}; version={exchange.contract.version}"
            )
        return problem_response(error, exchange.trace_id, extra)

    @staticmethod
    def _log_ids(exchange: Exchange) -> dict[str, str]:
        return {"trace_id": exchange.trace_id}


class _UpstreamCall:
    """One upstream attempt as an async context manager: a CLIENT span, trace context injected, and every
    transport failure mapped to a :class:`GatewayError` (raised ``from`` the original)."""

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
        self._span: Span | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        proxy, exchange = self._proxy, self._exchange
        route = exchange.route.name if exchange.route else "?"
        context = trace.set_span_in_context(exchange.span)
        if exchange.span.is_recording():
            self._span = proxy._tracer.start_span(self._method, context=context, kind=SpanKind.CLIENT)
            self._span.set_attributes({"http.request.method": self._method, "url.full": str(self._url)})
            context = trace.set_span_in_context(self._span)
        proxy._propagator.inject(self._headers, context=context)
        try:
            self._response = await proxy._session.request(
                self._method, self._url, headers=self._headers, data=self._data, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            self._fail(exc)
            raise UpstreamTimeout(route, f"Upstream {route!r} did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            self._fail(exc)
            raise UpstreamError(route, f"Cannot connect to upstream {route!r}: {exc.os_error}.") from exc
        except aiohttp.ClientError as exc:
            self._fail(exc)
            if isinstance(exc.__cause__, PayloadTooLarge):  # raised by our body stream, wrapped by aiohttp
                raise exc.__cause__ from exc
            raise UpstreamError(route, f"Upstream {route!r} failed: {type(exc).__name__}: {exc}.") from exc
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", self._response.status)
        return self._response

    def _fail(self, exc: BaseException) -> None:
        if self._span is not None:
            self._span.record_exception(exc)
            self._span.set_status(StatusCode.ERROR, type(exc).__name__)
            self._span.end()
            self._span = None

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._response is not None:
            self._response.release()
        if self._span is None:
            return
        if isinstance(exc, (TimeoutError, aiohttp.ClientError)):
            self._span.set_status(StatusCode.ERROR, type(exc).__name__)
        self._span.end()
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            route = self._exchange.route.name if self._exchange.route else "?"
            raise UpstreamTimeout(route, f"Upstream {route!r} stopped sending mid-response.") from exc
        if isinstance(exc, aiohttp.ClientError):
            route = self._exchange.route.name if self._exchange.route else "?"
            raise UpstreamError(route, f"Upstream {route!r} broke off its response: {type(exc).__name__}.") from exc
