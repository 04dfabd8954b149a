"""Contracts imported from an MCP server's own ``tools/list`` hold it to what it declared.

The import runs the real CLI against a real MCP server; the gateway then fronts a *drifted* build of that server
(``add`` now answers a string), and the official MCP client calling through the gateway gets the drift refused
with a JSON-RPC error carrying the violations.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from mcp import MCPError

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.protocols.mcp_import import contracts_from_tools
from tests.conftest import TOKEN, gateway_config
from tests.protocols.conftest import Peer
from tests.protocols.peers import mcp_app, mcp_server, mcp_session, serve_asgi


def drifted(server: Any) -> None:
    """The same server, whose ``add`` changed its output type."""
    server.remove_tool("add")

    @server.tool(name="add")
    def add_as_text(a: int, b: int) -> str:
        """Add two integers (now answers in words)."""
        return "five" if a + b == 5 else str(a + b)


@pytest.fixture
async def drifted_peer() -> AsyncIterator[Peer]:
    async with serve_asgi(mcp_app(mcp_server(drifted))) as base:
        yield Peer(base, base + "/mcp")


async def import_mcp(gateway: RunningGateway, url: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "gateway.cli", "contracts", "import-mcp", url, "--route", "agent", "--json",
               "--admin-url", str(gateway.admin_url)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = orjson.loads(out)
    return result


def test_a_tool_becomes_a_contract_on_its_arguments_and_declared_output() -> None:
    tool = {"name": "add", "description": "Add.", "inputSchema": {"type": "object", "required": ["a"]},
            "outputSchema": {"type": "object", "required": ["result"]}}  # fmt: skip
    document, pin = contracts_from_tools([tool], route="tools", path="/mcp")
    assert document["id"] == "mcp.add"
    assert document["jsonrpc"]["tool"] == "add"
    assert document["jsonrpc"]["params"]["properties"]["arguments"] == tool["inputSchema"]
    assert document["jsonrpc"]["result"]["else"]["properties"]["structuredContent"] == tool["outputSchema"]
    assert pin["jsonrpc"]["method"] == "tools/list"
    assert pin["jsonrpc"]["result"]["properties"]["tools"]["items"] == {"enum": [tool]}


async def test_imported_contracts_refuse_a_drifted_tool_through_the_official_client(
    make_gateway: Callable[..., Awaitable[RunningGateway]], mcp_peer: Peer, drifted_peer: Peer
) -> None:
    gateway = await make_gateway(gateway_config([{"name": "agent", "upstream": drifted_peer.base}]))
    imported = await import_mcp(gateway, mcp_peer.url)
    assert imported["tools"] == 2
    assert {c["id"] for c in imported["registered"]["registered"]} == {"mcp.add", "mcp.echo", "mcp.tools-list"}
    again = await import_mcp(gateway, mcp_peer.url)
    assert (again["unchanged"], again["registered"]) == (3, None)  # an unchanged tool set makes no new version
    url = f"{gateway.data_url}/agent/mcp"
    async with mcp_session(url) as session:
        with pytest.raises(MCPError) as pinned:  # the drifted server's add declares another output: not the pin
            await session.list_tools()
    assert pinned.value.error.data["contract"] == "mcp.tools-list"
    assert pinned.value.error.data["violations"][0]["pointer"].startswith("/result/tools/")
    async with AdminClient(gateway.admin_url, TOKEN) as admin:  # lift the pin: the per-tool contracts still hold
        await admin.request("DELETE", "/contracts/mcp.tools-list")
    async with mcp_session(url) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == {"add", "echo"}
        assert (await session.call_tool("echo", {"text": "hi"})).structured_content == {"result": "hi"}
        with pytest.raises(MCPError) as drift:
            await session.call_tool("add", {"a": 2, "b": 3})
        with pytest.raises(MCPError) as bad_arguments:
            await session.call_tool("add", {"a": "two", "b": 3})
    problem = drift.value.error.data
    assert problem["type"].endswith("/response_invalid")
    assert problem["violations"][0]["pointer"] == "/result/structuredContent/result"
    assert bad_arguments.value.error.code == -32602
    assert bad_arguments.value.error.data["violations"][0]["pointer"] == "/params/arguments/a"
