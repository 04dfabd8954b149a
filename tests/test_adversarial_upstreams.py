"""Upstream agents that misbehave at the transport level: slow, hung, crashing, truncating, absent, not HTTP.

Whatever an agent does, the caller gets a problem document (or, once a streamed response has started, a cut
connection), never a hang and never a gateway 500; and the gateway's in-flight gauge returns to zero.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import TOKEN, Upstream, contract, gateway_config

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
    assert gw.proxy.in_flight("agent") == 0
    return resp.status, problem["type"].rsplit("/", 1)[1]


@pytest.mark.parametrize("contracted", [True, False])
async def test_slow_agent_times_out_as_504(
    make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession, contracted: bool
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"result": "late"})

    upstream: Upstream = await make_upstream(slow)
    gw = await gateway_to(make_gateway, upstream.url, contracted=contracted, read=0.2)
    assert await problem_of(http, gw) == (504, "upstream-timeout")


async def test_hung_agent_that_never_answers_is_504(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession
) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    gw = await gateway_to(make_gateway, await raw_upstream(hang), read=0.2)
    assert await problem_of(http, gw) == (504, "upstream-timeout")


async def test_agent_stalling_mid_body_is_504_on_contracted_operation(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"res')
        await writer.drain()
        await asyncio.sleep(10)

    gw = await gateway_to(make_gateway, await raw_upstream(stall), contracted=True, read=0.2)
    assert await problem_of(http, gw) == (504, "upstream-timeout")


@pytest.mark.parametrize("contracted", [True, False])
async def test_agent_crashing_before_answering_is_502(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession, contracted: bool
) -> None:
    async def crash(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    gw = await gateway_to(make_gateway, await raw_upstream(crash), contracted=contracted)
    assert await problem_of(http, gw) == (502, "upstream-error")


async def test_truncated_response_on_contracted_operation_is_502(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession
) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"result"')
        await writer.drain()
        writer.close()

    gw = await gateway_to(make_gateway, await raw_upstream(truncate), contracted=True)
    assert await problem_of(http, gw) == (502, "upstream-error")


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
    await asyncio.sleep(0.05)
    assert gw.proxy.in_flight("agent") == 0


async def test_agent_speaking_garbage_instead_of_http_is_502(
    make_gateway: Any, raw_upstream: Any, http: aiohttp.ClientSession
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.0\r\n\x00\x01\x02 not http at all\r\n\r\n")
        await writer.drain()
        writer.close()

    gw = await gateway_to(make_gateway, await raw_upstream(garbage), contracted=True)
    assert await problem_of(http, gw) == (502, "upstream-error")


async def test_agent_down_is_502_with_connect_detail(make_gateway: Any, http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gw = await gateway_to(make_gateway, f"http://127.0.0.1:{port}", contracted=True)
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
