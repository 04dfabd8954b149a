"""Upstream agents that misbehave at the transport level: slow, hung, crashing, truncating, absent, not HTTP.

Whatever an agent does, the caller gets a problem document (or, once a streamed response has started, a cut
connection), never a hang and never a gateway 500; and the gateway's in-flight gauge returns to zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.outcomes import Verdict
from tests.conftest import TOKEN, Upstream, contract, eventually, free_port, gateway_config

RawBehaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[RawBehaviour], Awaitable[str]]]:
    """A TCP server on loopback that does whatever the test says with each connection."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(behaviour: RawBehaviour) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await reader.readuntil(b"\r\n\r\n")
            await behaviour(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def gateway_to(make_gateway: Any, url: str, *, contracted: bool = False, read: float = 0.5) -> RunningGateway:
    gw: RunningGateway = await make_gateway(
        gateway_config([{"name": "agent", "upstream": url}], timeouts={"read": read, "connect": 0.5})
    )
    if contracted:
        async with AdminClient(gw.admin_url, TOKEN) as admin:
            await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    return gw


async def problem_of(http: aiohttp.ClientSession, gw: RunningGateway, path: str = "/agent/tasks") -> tuple[int, str]:
    async with http.post(gw.data_url + path, json={"task": "t", "priority": 1}) as resp:
        problem = await resp.json(content_type=None)
    assert gw.proxy.admit.in_flight("agent") == 0
    return resp.status, problem["type"].rsplit("/", 1)[1]


async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{"result": "late"}')


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(10)


async def stall_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"res')
    await writer.drain()
    await asyncio.sleep(10)


async def crash(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"result"')
    await writer.drain()
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.0\r\n\x00\x01\x02 not http at all\r\n\r\n")
    await writer.drain()
    writer.close()


TIMEOUT = (504, Verdict.UPSTREAM_TIMEOUT)
ERROR = (502, Verdict.UPSTREAM_ERROR)


@pytest.mark.parametrize(
    ("behaviour", "contracted", "expected"),
    [
        pytest.param(slow, True, TIMEOUT, id="slow-contracted"),
        pytest.param(slow, False, TIMEOUT, id="slow-uncontracted"),
        pytest.param(hang, False, TIMEOUT, id="hung-never-answers"),
        pytest.param(stall_mid_body, True, TIMEOUT, id="stalls-mid-body-contracted"),
        pytest.param(crash, True, ERROR, id="crashes-before-answering-contracted"),
        pytest.param(crash, False, ERROR, id="crashes-before-answering-uncontracted"),
        pytest.param(truncate, True, ERROR, id="truncated-body-contracted"),
        pytest.param(garbage, True, ERROR, id="speaks-garbage-not-http"),
    ],
)
async def test_a_misbehaving_agent_becomes_a_problem_document(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession, behaviour: RawBehaviour, contracted: bool,
    expected: tuple[int, Verdict],
) -> None:  # fmt: skip
    """The status and the problem type (``…/problems/<verdict>``) for each way an agent can fail the transport."""
    read = 0.2 if expected == TIMEOUT else 0.5
    gw = await gateway_to(make_gateway, await raw_upstream(behaviour), contracted=contracted, read=read)
    assert await problem_of(http, gw) == expected


async def test_truncated_streamed_response_cuts_the_callers_connection(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession
) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    gw = await gateway_to(make_gateway, await raw_upstream(truncate))
    async with http.get(gw.data_url + "/agent/file") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()  # the caller can tell: fewer bytes than Content-Length, then EOF
    await eventually(lambda: gw.proxy.admit.in_flight("agent") == 0, what="the cut stream is no longer in flight")


async def test_agent_down_is_502_with_connect_detail(make_gateway: Any, http: aiohttp.ClientSession) -> None:
    gw = await gateway_to(make_gateway, f"http://127.0.0.1:{free_port()}", contracted=True)
    async with http.post(gw.data_url + "/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        problem = await resp.json(content_type=None)
    assert resp.status == 502
    assert problem["detail"].startswith("Cannot connect to upstream 'agent'")
    assert problem["route"] == "agent"


async def test_agent_error_page_without_schema_is_relayed_as_is(
    make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    async def crash_page(request: web.Request) -> web.Response:
        return web.Response(status=500, text="<html>Traceback ...</html>", content_type="text/html")

    upstream: Upstream = await make_upstream(crash_page)
    gw = await gateway_to(make_gateway, upstream.url, contracted=True)
    async with http.post(gw.data_url + "/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        assert resp.status == 500
        assert await resp.text() == "<html>Traceback ...</html>"
