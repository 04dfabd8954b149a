"""Calling an agent: the :class:`Upstream` interface the relay and the fallback use, and its HTTP implementation.

One call is a CLIENT span (when sampled), trace context, run id and deadline injected, and every transport
failure mapped to a :class:`GatewayError` raised ``from`` the original. Tests swap in the in-memory
implementation in :mod:`gateway.testing` (as httpx's ``MockTransport``), so the stages above get fast
table-driven tests without sockets.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import aiohttp
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from yarl import URL

from gateway.config import Limits, RouteSpec, Timeouts
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.transport import Answer, stream_request_body, upstream_request_headers, upstream_url
from gateway.errors import PayloadTooLarge, RequestTimeout, UpstreamError, UpstreamTimeout
from gateway.headers import DEADLINE, RUN
from gateway.observability.telemetry import inject_upstream

LARGE_BODY = 1024 * 1024


class Upstream(Protocol):
    """Sends one request to an agent: the exchange's own route, or a fallback's."""

    def call(
        self, exchange: Exchange, route: RouteSpec, body: bytes | None, budget: float | None
    ) -> AbstractAsyncContextManager[Answer]: ...


class UpstreamCall:
    """An async context manager around ``session.request``; the response is released on exit."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        tracer: Tracer,
        exchange: Exchange,
        route: str,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: object,
        timeout: aiohttp.ClientTimeout | None,
    ) -> None:
        self._session = session
        self._tracer = tracer
        self._exchange = exchange
        self._route = route
        self._method = method
        self._url = url
        self._headers = headers
        self._data = data
        self._timeout = timeout
        self._response: aiohttp.ClientResponse | None = None
        self._span: trace.Span | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        exchange = self._exchange
        context = trace.set_span_in_context(exchange.span)
        if exchange.span.is_recording():
            self._span = self._tracer.start_span(self._method, context=context, kind=SpanKind.CLIENT)
            self._span.set_attributes(
                {"http.request.method": self._method, "url.full": str(self._url), "retry.attempt": exchange.attempt,
                 "run.id": exchange.run_id, "agent.target": self._route}
            )  # fmt: skip
            if exchange.breaker_state is not None:
                self._span.set_attribute("breaker.state", exchange.breaker_state)
            context = trace.set_span_in_context(self._span, context)
        inject_upstream(self._headers, context, exchange.run_id)
        exchange.upstream_started = time.perf_counter()
        try:
            self._response = await self._session.request(
                self._method, self._url, headers=self._headers, data=self._data, allow_redirects=False,
                timeout=self._timeout or self._session.timeout,
            )  # fmt: skip
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            self._fail(exc)
            raise UpstreamTimeout(self._route, f"Upstream {self._route!r} did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            self._fail(exc)
            raise UpstreamError(self._route, f"Cannot connect to upstream {self._route!r}: {exc.os_error}.") from exc
        except aiohttp.ClientError as exc:
            self._fail(exc)
            if isinstance(exc.__cause__, PayloadTooLarge | RequestTimeout):  # our body stream, wrapped by aiohttp
                raise exc.__cause__ from exc
            raise UpstreamError(self._route, f"Upstream {self._route!r} failed: {type(exc).__name__}: {exc}.") from exc
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", self._response.status)
        return self._response

    def _fail(self, exc: BaseException) -> None:
        self._exchange.upstream_seconds = self._exchange.attempt_seconds
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


class HttpUpstream:
    """:class:`Upstream` over the one pooled ``aiohttp`` session."""

    def __init__(self, session: aiohttp.ClientSession, tracer: Tracer, limits: Limits, timeouts: Timeouts) -> None:
        self._session = session
        self._tracer = tracer
        self._limits = limits
        self._timeouts = timeouts

    def call(self, exchange: Exchange, route: RouteSpec, body: bytes | None, budget: float | None) -> UpstreamCall:
        return prepare_call(
            session=self._session, tracer=self._tracer, limits=self._limits, timeouts=self._timeouts,
            exchange=exchange, route=route, body=body, budget=budget,
        )  # fmt: skip


def prepare_call(
    *,
    session: aiohttp.ClientSession,
    tracer: Tracer,
    limits: Limits,
    timeouts: Timeouts,
    exchange: Exchange,
    route: RouteSpec,
    body: bytes | None,
    budget: float | None,
) -> UpstreamCall:
    """The request for one attempt: end-to-end headers plus the run id, the remaining deadline budget, and
    ``Accept-Encoding: identity`` when the gateway must read the answer; a buffered body, or the inbound stream."""
    request = exchange.request
    streamed = body is None
    headers = upstream_request_headers(request, keep_length=streamed)
    headers[RUN] = exchange.run_id
    if budget is not None:
        headers[DEADLINE] = str(max(1, int(budget * 1000)))
    if exchange.contract is not None and exchange.contract.responses:
        headers["Accept-Encoding"] = "identity"
    data: AsyncIterator[bytes] | io.BytesIO | bytes | None = body
    if streamed and request.body_exists:
        data = stream_request_body(request, limits.max_body_bytes, timeouts.client_idle)
    elif body is not None and len(body) > LARGE_BODY:
        data = io.BytesIO(body)  # aiohttp writes large bytes in one go and warns; BytesIO is sent in chunks
    client_timeout = None
    sock_read = timeouts.stream_idle if "text/event-stream" in request.headers.get("Accept", "") else timeouts.read
    if budget is not None or sock_read != timeouts.read:
        client_timeout = aiohttp.ClientTimeout(total=budget, connect=timeouts.connect, sock_read=sock_read)
    return UpstreamCall(
        session=session, tracer=tracer, exchange=exchange, route=route.name, method=request.method,
        url=upstream_url(route.upstream, exchange.path, exchange.query), headers=headers, data=data,
        timeout=client_timeout,
    )  # fmt: skip
