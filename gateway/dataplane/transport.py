"""Talking to upstream agents: the pooled client session and the header rules of an HTTP intermediary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config import Timeouts
from gateway.errors import PayloadTooLarge, RequestTimeout, UpstreamPayloadTooLarge

#: Connection-specific fields a proxy must not forward (RFC 9110 §7.6.1), plus the pre-standard
#: ``Proxy-Connection`` and ``Keep-Alive`` that clients still send.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Fields the gateway recomputes: the framing of a re-sent body, and the target's own Host.
_RECOMPUTED = frozenset({"host", "content-length"})
_DROP_WHEN_STREAMED = HOP_BY_HOP | {"host"}  # a streamed body keeps its Content-Length framing
_DROP_WHEN_RESENT = HOP_BY_HOP | _RECOMPUTED
VIA = "1.1 agent-gateway"
STREAM_CHUNK = 64 * 1024


class Chunks(Protocol):
    def iter_chunked(self, n: int) -> AsyncIterator[bytes]: ...


class Answer(Protocol):
    """What the gateway reads of an agent's answer (an ``aiohttp.ClientResponse`` is one)."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content(self) -> Chunks: ...
    async def read(self) -> bytes: ...


def new_session(timeouts: Timeouts, *, pool_size: int = 0) -> aiohttp.ClientSession:
    """One pooled session for all upstreams; bodies are relayed byte for byte (no decompression)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, ttl_dns_cache=60),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.read),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
    )


def _connection_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    """Field names listed in ``Connection`` are hop-by-hop for this message too (RFC 9110 §7.6.1)."""
    return {token.strip().lower() for value in headers.getall("Connection", ()) for token in value.split(",")}


def _end_to_end(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    copy = CIMultiDict(headers)
    for name in drop:
        copy.popall(name, None)
    if "Connection" in headers:
        for name in _connection_tokens(headers):
            copy.popall(name, None)
    return copy


def upstream_request_headers(request: web.Request, *, keep_length: bool) -> CIMultiDict[str]:
    """The inbound headers minus hop-by-hop ones, plus ``X-Forwarded-*`` and ``Via``."""
    headers = _end_to_end(request.headers, _DROP_WHEN_STREAMED if keep_length else _DROP_WHEN_RESENT)
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
    headers["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", request.host)
    headers["Via"] = f"{request.headers['Via']}, {VIA}" if "Via" in request.headers else VIA
    return headers


def downstream_response_headers(upstream: Answer) -> CIMultiDict[str]:
    """Upstream response headers to relay: end-to-end ones only, ``Content-Length`` recomputed, ``Via`` added."""
    headers = _end_to_end(upstream.headers, _DROP_WHEN_RESENT)
    headers["Via"] = f"{upstream.headers['Via']}, {VIA}" if "Via" in upstream.headers else VIA
    return headers


def upstream_url(base: str, path: str, query_string: str) -> URL:
    """Join the route's upstream with the (already percent-encoded) path and query, without re-quoting."""
    return URL(f"{base}{path}?{query_string}" if query_string else f"{base}{path}", encoded=True)


async def _chunks(request: web.Request, limit: int, idle: float) -> AsyncIterator[bytes]:
    """The inbound body chunk by chunk: more than ``limit`` bytes is :class:`PayloadTooLarge`, no byte for
    ``idle`` seconds is :class:`RequestTimeout` (a stalled upload must not hold a connection forever)."""
    seen = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.readany()
        except TimeoutError:
            raise RequestTimeout(f"No byte of the request body arrived for {idle:g} s.") from None
        if not chunk:
            return
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(limit)
        yield chunk


def stream_request_body(request: web.Request, limit: int, idle: float) -> AsyncIterator[bytes]:
    """Relay the inbound body as it arrives (see :func:`_chunks` for the limits)."""
    return _chunks(request, limit, idle)


async def read_request_body(request: web.Request, limit: int, idle: float) -> bytes:
    """The whole inbound body (see :func:`_chunks` for the limits). A body that arrived whole with its head (the
    usual small request: aiohttp has parsed it to its end before the handler runs) is taken from the buffer at
    once; arming and cancelling the idle timer per chunk cost ≈15 µs a request for nothing to wait on."""
    content = request.content
    if content.is_eof():
        body = content.read_nowait()
        if len(body) > limit:
            raise PayloadTooLarge(limit)
        return body
    return b"".join([chunk async for chunk in _chunks(request, limit, idle)])


async def read_limited(response: Answer, limit: int) -> bytes:
    """The whole upstream body; :class:`UpstreamPayloadTooLarge` once it is longer than ``limit`` bytes."""
    if response.content_length is not None:
        if response.content_length > limit:
            raise UpstreamPayloadTooLarge(limit)
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(STREAM_CHUNK):
        size += len(chunk)
        if size > limit:
            raise UpstreamPayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
