"""Shared fixtures and helpers: real upstream agents on loopback, a real gateway, an in-memory span exporter,
``eventually`` (bounded polling instead of sleeps), ``free_port`` and ``scripted`` agents."""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway, start_gateway
from gateway.config import GatewayConfig, deep_merge
from gateway.observability.telemetry import build_tracer_provider

TOKEN = "test-admin-token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

#: How long ``eventually`` waits before failing: a guard against hangs, never a timing assertion.
PATIENCE = 10.0


def _timed_out(what: str, within: float, last: object) -> AssertionError:
    return AssertionError(f"{what or 'condition'} still not true after {within} s (last: {last!r})")


async def eventually(
    condition: Callable[[], T | Awaitable[T]], *, within: float = PATIENCE, every: float = 0.01,
    ignoring: tuple[type[Exception], ...] = (), what: str = "",
) -> T:  # fmt: skip
    """Poll ``condition`` (sync or async) until it returns something truthy, and return that.

    The event loop keeps running between polls, so the servers a test drives make progress; an exception in
    ``ignoring`` counts as "not yet". Fails with an ``AssertionError`` naming ``what`` after ``within`` seconds.
    """
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            result = condition()
            last = await result if inspect.isawaitable(result) else result
        except ignoring as exc:
            last = exc
        if last and not isinstance(last, BaseException):
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(what, within, last)
        await asyncio.sleep(every)


def eventually_blocking(
    condition: Callable[[], T], *, within: float = PATIENCE, every: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (), what: str = "",
) -> T:  # fmt: skip
    """:func:`eventually` for synchronous tests polling another process (a CLI, ``redis-server``)."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            last = condition()
        except ignoring as exc:
            last = exc
        if last and not isinstance(last, BaseException):
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(what, within, last)
        time.sleep(every)


def free_port() -> int:
    """A loopback port nobody listens on (for an agent that is down, or a child process to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Seen:
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    """A real aiohttp server standing in for an agent; it records every request it actually receives."""

    server: TestServer
    seen: list[Seen] = field(default_factory=list)
    handler: Handler | None = None

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


async def echo_json(request: web.Request) -> web.StreamResponse:
    """Echo the body back as JSON (or ``{}`` when empty)."""
    body = await request.read()
    return web.Response(body=body or b"{}", content_type="application/json")


def replying(body: bytes, status: int = 200, content_type: str = "application/json") -> Handler:
    """A handler that always answers ``body``."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=status, content_type=content_type)

    return handler


def scripted(*replies: tuple[int, Any], headers: dict[str, str] | None = None) -> Handler:
    """An agent answering from a script, one reply per request: ``(status, JSON body or raw bytes)``; the last
    reply repeats. Every answer is ``application/json`` and carries ``headers`` (default ``Retry-After: 0``)."""
    queue = list(replies)
    extra = {"Retry-After": "0"} if headers is None else headers

    async def handler(request: web.Request) -> web.Response:
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(status=status, body=raw, content_type="application/json", headers=extra)

    return handler


@pytest.fixture
async def make_upstream(aiohttp_server: Any) -> Callable[[Handler | None], Awaitable[Upstream]]:
    async def make(handler: Handler | None = None) -> Upstream:
        upstream: Upstream

        async def dispatch(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            path, _, query = request.raw_path.partition("?")
            upstream.seen.append(Seen(request.method, path, query, dict(request.headers), body))
            return await (upstream.handler or echo_json)(request)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", dispatch)
        server = await aiohttp_server(app)
        upstream = Upstream(server, handler=handler)
        return upstream

    return make


@pytest.fixture
async def upstream(make_upstream: Callable[[Handler | None], Awaitable[Upstream]]) -> Upstream:
    return await make_upstream(None)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def gateway_config(routes: list[dict[str, Any]], **overrides: Any) -> GatewayConfig:
    base = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
        "store": {"path": ":memory:"},
        "routes": routes,
    }
    return GatewayConfig.model_validate(deep_merge(base, overrides))


@pytest.fixture
async def make_gateway(spans: InMemorySpanExporter) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    started: list[RunningGateway] = []

    async def make(config: GatewayConfig, **kwargs: Any) -> RunningGateway:
        gateway = await start_gateway(config, tracer_provider=build_tracer_provider(spans), **kwargs)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        await gateway.close()


@pytest.fixture
async def gateway(make_gateway: Callable[..., Awaitable[RunningGateway]], upstream: Upstream) -> RunningGateway:
    """A gateway with route ``agent`` (prefix ``/agent``) in front of the ``upstream`` fixture."""
    return await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}]))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture
async def admin(gateway: RunningGateway) -> AsyncIterator[AdminClient]:
    async with AdminClient(gateway.admin_url, TOKEN) as client:
        yield client


def contract(**overrides: Any) -> dict[str, Any]:
    """A contract for ``POST /agent/tasks`` with typical request and response schemas."""
    base: dict[str, Any] = {
        "id": "agent.tasks",
        "route": "agent",
        "operation": {"method": "POST", "path": "/tasks"},
        "request": {
            "body": {
                "type": "object",
                "required": ["task", "priority"],
                "properties": {
                    "task": {"type": "string", "minLength": 1},
                    "priority": {"type": "integer", "minimum": 0},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            }
        },
        "responses": {
            "200": {"type": "object", "required": ["result"], "properties": {"result": {"type": "string"}}},
            "4XX": {"type": "object", "required": ["error"]},
        },
    }
    base.update(overrides)
    return base


def redis_ping(port: int) -> bool:
    """Does a Redis server answer ``PING`` on ``port``? (``OSError`` while it is not listening yet.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real ``redis-server`` on loopback for the shared-store tests (installed by ``.ci/run``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the Redis store is untested here")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        eventually_blocking(lambda: redis_ping(port), ignoring=(OSError,), what=f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


class RedisServer:
    """A ``redis-server`` a test owns: it can be killed like a crashed server and started again, without
    touching the session's shared one."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        eventually_blocking(lambda: redis_ping(self.port), ignoring=(OSError,), what="redis-server started")

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A killable redis-server of this test's own."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()
