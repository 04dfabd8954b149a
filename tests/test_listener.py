"""The data-plane listener holds against slow and malformed clients: a trickled head or a stalled body is cut
off without freezing anyone else, an oversized header block is refused, and every refusal is a problem document
that does not advertise the software version.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from gateway.app import RunningGateway
from tests.conftest import TOKEN, Handler, Upstream, contract, gateway_config
from tests.test_request_target import exchange_raw

GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def strict(make_gateway: GatewayFactory, upstream: Upstream) -> RunningGateway:
    gateway = await make_gateway(
        gateway_config(
            [{"name": "agent", "upstream": upstream.url}],
            timeouts={"header": 0.3, "client_idle": 0.3},
            limits={"max_header_bytes": 4096},
        )
    )
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{gateway.admin_url}/contracts/agent.tasks",
            json=contract(responses={}),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as answer,
    ):
        assert answer.status in (200, 201)
    return gateway


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def test_a_trickled_request_head_is_cut_off_while_others_are_served(
    strict: RunningGateway, http: aiohttp.ClientSession
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.data_port)
    head = b"GET /agent/x HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-Pad-%d: a\r\n" % i for i in range(40)) + b"\r\n"
    sent = 0
    try:
        for byte in head:
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            if sent == 10:  # mid-trickle, a normal request on another connection is answered
                async with http.get(f"{strict.data_url}/agent/x") as answer:
                    assert answer.status == 200
            await asyncio.sleep(0.02)
        assert await reader.read() == b""
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    assert sent < len(head)  # the gateway hung up before the head was complete


async def test_a_keep_alive_connection_gets_the_deadline_for_each_new_head(strict: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.data_port)
    writer.write(b"GET /agent/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    status, _, _ = await _head(reader)
    assert status == 200
    writer.write(b"GET /agent/x HTTP/1.1\r\n")  # the next head starts, and never finishes
    assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize("path", ["/agent/tasks", "/agent/uncontracted"])
async def test_a_stalled_body_is_answered_408(strict: RunningGateway, upstream: Upstream, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.data_port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"task": '
    )
    status, headers, body = await _head(reader)
    writer.close()
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["type"].endswith("request-timeout")
    assert all(seen.path != "/tasks" for seen in upstream.seen)


async def test_the_header_block_has_a_total_size_budget(strict: RunningGateway, upstream: Upstream) -> None:
    headers = "".join(f"X-Big-{i}: {'v' * 1000}\r\n" for i in range(5))
    status, _, body = await exchange_raw(strict.data_port, "GET", "/agent/x", extra_headers=headers)
    assert status == 431
    assert json.loads(body)["type"].endswith("headers-too-large")
    assert upstream.seen == []


async def test_the_default_budget_refuses_a_hundred_large_headers(gateway: RunningGateway, upstream: Upstream) -> None:
    headers = "".join(f"X-Big-{i}: {'v' * 8000}\r\n" for i in range(95))
    status, _, _ = await exchange_raw(gateway.data_port, "GET", "/agent/x", extra_headers=headers)
    assert status == 431
    assert upstream.seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /agent/x HTTP/1.1\r\nHost: gw\r\nNo colon here\r\n\r\n",
        b"GET /agent/x HTTP/1.1\r\nHost: gw\r\nX-Long: " + b"v" * 9000 + b"\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"get /agent/x HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"POST /agent/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
@pytest.mark.parametrize("listener", ["data", "admin"])
async def test_parser_errors_are_problem_documents(
    gateway: RunningGateway, request_bytes: bytes, listener: str
) -> None:
    port = gateway.data_port if listener == "data" else gateway.admin_port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes)
    status, headers, body = await _head(reader)
    writer.close()
    assert 400 <= status < 500
    assert headers["content-type"] == "application/problem+json"
    assert headers["server"] == "agent-gateway"
    problem = json.loads(body)
    assert problem["status"] == status
    assert b"caf" not in body  # the offending bytes are not echoed back
    assert b"No colon" not in body


async def test_answers_do_not_advertise_the_software_version(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.data_url}/nowhere") as refused:
        assert refused.status == 404
        assert refused.headers["Server"] == "agent-gateway"
    upstream.handler = replying_with_server("planner/2.1")
    async with http.get(f"{gateway.data_url}/agent/x") as relayed:
        assert relayed.headers["Server"] == "planner/2.1"  # the agent's own field is end-to-end: relayed


def replying_with_server(server: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Server": server})

    return handler
