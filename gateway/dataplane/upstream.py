"""Calling an agent: the :class:`Upstream` interface the relay and the fallback use, and its HTTP implementation.

One call is a CLIENT span (when the SERVER span is recorded: ``gateway/observability/spans.py``), trace context,
run id and deadline injected, and every transport failure mapped to a :class:`GatewayError` raised ``from`` the
original. Tests swap in the in-memory implementation in :mod:`gateway.testing` (as httpx's ``MockTransport``), so
the stages above get fast table-driven tests without sockets.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from yarl import URL

from gateway.config import Limits, RouteSpec, Timeouts
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.transport import Answer, stream_request_body, upstream_request_headers, upstream_url
from gateway.errors import ContractViolation, PayloadTooLarge, RequestTimeout, UpstreamError, UpstreamTimeout
from gateway.headers import DEADLINE, RUN
from gateway.observability.spans import client_attributes, end_client_span, span_method
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
        timeout: aiohttp.ClientTimeout,
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
        if exchange.span.is_recording():  # a CLIENT span only under a recorded SERVER span: nothing built otherwise
            self._span = self._tracer.start_span(
                span_method(self._method), context=context, kind=SpanKind.CLIENT,
                attributes=client_attributes(self._method, self._url, self._route, exchange.run_id,
                                             exchange.attempt, exchange.breaker_state),
            )  # fmt: skip
            context = trace.set_span_in_context(self._span, context)
        inject_upstream(self._headers, context, exchange.run_id)
        exchange.upstream_started = time.perf_counter()
        try:
            self._response = await self._session.request(
                self._method, self._url, headers=self._headers, data=self._data, allow_redirects=False,
                timeout=self._timeout,
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
        return self._response

    def _fail(self, exc: BaseException) -> None:
        self._exchange.upstream_seconds = self._exchange.attempt_seconds
        if self._span is not None:
            end_client_span(self._span, None, exc, None)
            self._span = None

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._response is not None:
            self._response.release()
        if self._span is not None:
            status = self._response.status if self._response is not None else None
            refused = exc.verdict.value if isinstance(exc, ContractViolation) else None
            broken = exc if isinstance(exc, TimeoutError | aiohttp.ClientError) else None
            end_client_span(self._span, status, broken, refused)
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(self._route, f"Upstream {self._route!r} stopped sending mid-response.") from exc
        if isinstance(exc, aiohttp.ClientError):
            detail = f"Upstream {self._route!r} broke off its response: {type(exc).__name__}."
            raise UpstreamError(self._route, detail) from exc


class HttpUpstream:
    """:class:`Upstream` over the one pooled ``aiohttp`` session.

    The client timeouts that do not depend on the request are built once here: only a deadline budget, which
    differs per attempt, needs a new ``ClientTimeout``."""

    def __init__(self, session: aiohttp.ClientSession, tracer: Tracer, limits: Limits, timeouts: Timeouts) -> None:
        self._session = session
        self._tracer = tracer
        self._max_body_bytes = limits.max_body_bytes
        self._timeouts = timeouts
        self._read_timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.read)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect, sock_read=timeouts.stream_idle
        )

    def call(self, exchange: Exchange, route: RouteSpec, body: bytes | None, budget: float | None) -> UpstreamCall:
        """The request for one attempt: end-to-end headers plus the run id, the remaining deadline budget, and
        ``Accept-Encoding: identity`` when the gateway must read the answer; a buffered body, or the inbound
        stream."""
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
            data = stream_request_body(request, self._max_body_bytes, self._timeouts.client_idle)
        elif body is not None and len(body) > LARGE_BODY:
            data = io.BytesIO(body)  # aiohttp writes large bytes in one go and warns; BytesIO is sent in chunks
        return UpstreamCall(
            session=self._session, tracer=self._tracer, exchange=exchange, route=route.name, method=request.method,
            url=upstream_url(route.upstream, exchange.path, exchange.query), headers=headers, data=data,
            timeout=self._timeout(request, budget),
        )  # fmt: skip

    def _timeout(self, request: web.Request, budget: float | None) -> aiohttp.ClientTimeout:
        """The read timeout between bytes is ``timeouts.stream_idle`` for a caller that accepts an event stream."""
        streams = "text/event-stream" in request.headers.get("Accept", "")
        if budget is None:
            return self._stream_timeout if streams else self._read_timeout
        sock_read = self._timeouts.stream_idle if streams else self._timeouts.read
        return aiohttp.ClientTimeout(total=budget, connect=self._timeouts.connect, sock_read=sock_read)
