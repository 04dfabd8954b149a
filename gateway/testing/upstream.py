"""An in-memory :class:`~gateway.dataplane.upstream.Upstream`, as httpx's ``MockTransport``: a handler scripts
each attempt's answer, so the relay, attempts and recovery stages run in table-driven tests without sockets.

The handler gets ``(exchange, route, body)`` and returns a :class:`Scripted` answer, or raises what the HTTP
upstream raises for a failed call (:class:`~gateway.errors.UpstreamTimeout`, :class:`~gateway.errors.UpstreamError`).
Every call is recorded in :attr:`MemoryUpstream.calls`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import RouteSpec
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.transport import Answer

if TYPE_CHECKING:
    from gateway.dataplane.upstream import Upstream


@dataclass(frozen=True, slots=True)
class Scripted:
    """One answer. ``body`` as bytes is sent with ``Content-Length``; as a sequence of chunks it is delivered
    chunk by chunk with no length, as a chunked transfer would be."""

    status: int = 200
    body: bytes | Sequence[bytes] = b"{}"
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None


class MemoryAnswer:
    """A :class:`Scripted` answer seen through the :class:`~gateway.dataplane.transport.Answer` protocol."""

    def __init__(self, scripted: Scripted) -> None:
        self.status, self.reason, self.content_type = scripted.status, scripted.reason, scripted.content_type
        body = scripted.body
        self._chunks: tuple[bytes, ...] = (body,) if isinstance(body, bytes) else tuple(body)
        self.content_length = len(body) if isinstance(body, bytes) else None
        headers = CIMultiDict(scripted.headers)
        headers.setdefault("Content-Type", scripted.content_type)
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        self.headers = CIMultiDictProxy(headers)
        self.content = self

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            for start in range(0, len(chunk), n):
                yield chunk[start : start + n]

    async def read(self) -> bytes:
        return b"".join(self._chunks)


Handler = Callable[[Exchange, RouteSpec, bytes | None], Scripted]


@dataclass(frozen=True, slots=True)
class Sent:
    """What one call sent: the route's name, the body sent (``None``: streamed) and the time budget."""

    route: str
    body: bytes | None
    budget: float | None


class MemoryUpstream:
    """Answers every call with what ``handler`` scripts; :attr:`calls` records each call in order."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.calls: list[Sent] = []

    @asynccontextmanager
    async def call(
        self, exchange: Exchange, route: RouteSpec, body: bytes | None, budget: float | None
    ) -> AsyncIterator[Answer]:
        self.calls.append(Sent(route.name, body, budget))
        exchange.upstream_started = time.perf_counter()
        try:
            answer = self._handler(exchange, route, body)
        except Exception:
            exchange.upstream_seconds = exchange.attempt_seconds  # as the HTTP upstream records a failed call
            raise
        yield MemoryAnswer(answer)


if TYPE_CHECKING:
    _SATISFIES: type[Upstream] = MemoryUpstream  # mypy --strict proves the protocol holds
