"""Fixtures: real MCP, A2A and OpenAI-compatible peers on loopback (see ``peers.py`` for what each one is)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.protocols.peers import FakeChat, a2a_app, chat_app, mcp_app, mcp_server, serve_asgi


@dataclass(frozen=True)
class Peer:
    """A running peer: ``base`` is its origin, ``url`` the endpoint a client is given."""

    base: str
    url: str


@pytest.fixture
async def mcp_peer() -> AsyncIterator[Peer]:
    """The MCP server (tools ``add``, ``echo``) answering over SSE; ``url`` is its ``/mcp`` endpoint."""
    async with serve_asgi(mcp_app(mcp_server())) as base:
        yield Peer(base, base + "/mcp")


@pytest.fixture(params=[False, True], ids=["sse", "json"])
async def mcp_any_peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    """The same MCP server, once answering over SSE, once with plain ``application/json`` bodies."""
    async with serve_asgi(mcp_app(mcp_server(), json_response=request.param)) as base:
        yield Peer(base, base + "/mcp")


@pytest.fixture
async def a2a_peer() -> AsyncIterator[Peer]:
    """The A2A echo agent; ``url`` is what an a2a client resolves the agent card from."""
    async with serve_asgi(a2a_app) as base:
        yield Peer(base, base)


@pytest.fixture
async def chat_peer(aiohttp_server: Any) -> FakeChat:
    """The scripted OpenAI-compatible chat server; append to ``replies`` to script its answers."""
    chat = FakeChat()
    server = await aiohttp_server(chat_app(chat))
    chat.url = str(server.make_url("")).rstrip("/")
    return chat
