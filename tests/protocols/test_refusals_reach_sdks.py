"""A JSON-RPC refusal built by ``gateway.protocols`` reaches the user of each official SDK with its violations.

A minimal interposer (an aiohttp relay on loopback, standing in for the data path until it speaks JSON-RPC)
forwards to the real peer but answers a chosen operation itself with :func:`refusal` at :func:`refusal_status`,
and serves the A2A agent card rewritten by :func:`rewrite_card`, so the a2a client's calls come back to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from a2a.utils.errors import InvalidParamsError
from aiohttp import web
from mcp import MCPError

from gateway.protocols.agent_card import rewrite_card
from gateway.protocols.jsonrpc import Dialect, OperationKey, classify, error_code, refusal, refusal_status
from tests.protocols.conftest import Peer
from tests.protocols.peers import a2a_send, mcp_app, mcp_server, mcp_session, serve_asgi

PROBLEM = {
    "type": "https://agent-gateway.dev/problems/request_invalid",
    "title": "Request violates contract",
    "status": 422,
    "detail": "The request violates contract 'demo' version 1: 1 violation(s).",
    "violations": [{"pointer": "/params/arguments/b", "keyword": "maximum", "message": "41 is greater than 10"}],
    "trace_id": "trace-1",
}
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}
MakeServer = Callable[[web.Application], Awaitable[Any]]


def interposer(upstream: str, refused: OperationKey, dialect: Dialect) -> web.Application:
    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "GET" and request.path == "/mcp":
            return web.Response(status=405)  # no standalone SSE stream (MCP 2025-11-25 allows 405)
        envelope = classify(orjson.loads(body)) if body else None
        if envelope is not None and any(m.key == refused for m in envelope.messages):
            status = refusal_status(envelope)
            assert status is not None
            refused_answer = refusal(envelope, PROBLEM, error_code("request", dialect), dialect)
            return web.json_response(refused_answer, status=status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, upstream + request.path_qs, headers=headers, data=body) as answer,
        ):
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
            if request.path.endswith("/agent-card.json"):
                own = f"{request.scheme}://{request.host}"
                payload = orjson.dumps(rewrite_card(orjson.loads(payload), own).card)
            return web.Response(status=answer.status, body=payload, headers=out)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


async def start(aiohttp_server: MakeServer, app: web.Application) -> str:
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def mcp_json_peer() -> AsyncIterator[Peer]:
    """An MCP server answering in plain JSON (the interposer relays whole bodies)."""
    async with serve_asgi(mcp_app(mcp_server(), json_response=True)) as base:
        yield Peer(base, base + "/mcp")


async def test_mcp_client_raises_mcp_error_carrying_the_problem(
    mcp_json_peer: Peer, aiohttp_server: MakeServer
) -> None:
    front = await start(aiohttp_server, interposer(mcp_json_peer.base, OperationKey("tools/call", "add"), Dialect.MCP))
    async with mcp_session(front + "/mcp") as session:
        echoed = await session.call_tool("echo", {"text": "passes"})
        assert echoed.structured_content == {"result": "passes"}
        with pytest.raises(MCPError) as refused:
            await session.call_tool("add", {"a": 1, "b": 41})
    assert refused.value.code == -32602
    assert refused.value.message == PROBLEM["detail"]
    assert refused.value.data == PROBLEM


async def test_a2a_client_raises_invalid_params_carrying_the_problem(
    a2a_peer: Peer, aiohttp_server: MakeServer
) -> None:
    front = await start(aiohttp_server, interposer(a2a_peer.base, OperationKey("SendMessage"), Dialect.A2A))
    with pytest.raises(InvalidParamsError) as refused:
        await a2a_send(front, "hello", streaming=False)  # the rewritten card sends the call back to the front
    assert refused.value.message == PROBLEM["detail"]
    assert refused.value.data == PROBLEM
    events = await a2a_send(front, "hello", streaming=True)  # another operation passes through the front
    assert events[-1].WhichOneof("payload") == "status_update"
