"""Contracts from an MCP server's own declarations: one contract per tool, from ``tools/list``, and a pin.

Each tool's ``inputSchema`` becomes the contract's ``jsonrpc.params`` (at ``/params/arguments``) and its
``outputSchema``, when declared, the ``jsonrpc.result`` (a result that is not an error must carry
``structuredContent`` valid against it, as the MCP specification requires of servers that declare one). The
imported contracts are ordinary versioned documents: re-importing an unchanged tool set changes nothing, a changed
one is a new version to review, diff and roll back — and until then the pinned contracts keep holding the server to
what it declared (a tool whose answers drift from its import is refused).

A last contract pins the tool set: ``tools/list`` must answer exactly the tools imported (names, descriptions,
schemas), so a tool whose description was rewritten to steer the model (tool poisoning) or a tool added or changed
without review is a ``response_invalid`` verdict, refused by default (``failure_modes.response_invalid: pass``
lets it through with a warning; ``escalate`` hands it to a person), the differing tools pointed at in the audit.

The client is a minimal MCP streamable-HTTP client (``initialize``, ``notifications/initialized``, ``tools/list``
with pagination): enough to read declarations, with no MCP SDK needed at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from gateway.protocols.sse import SSEParser

PROTOCOL_VERSION = "2025-06-18"
SESSION_HEADER = "Mcp-Session-Id"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ImportFailed(Exception):
    """The MCP server could not be read (unreachable, not MCP, or it answered with an error)."""


def contracts_from_tools(
    tools: Sequence[Mapping[str, Any]], *, route: str, path: str = "/mcp", prefix: str = "mcp."
) -> list[dict[str, Any]]:
    """One contract document per tool; ids are ``<prefix><tool name>`` made id-safe."""
    documents = []
    for tool in tools:
        name = str(tool["name"])
        rpc: dict[str, Any] = {"method": "tools/call", "tool": name}
        if isinstance(tool.get("inputSchema"), Mapping):
            arguments = dict(tool["inputSchema"])
            rpc["params"] = {"type": "object", "required": ["arguments"], "properties": {"arguments": arguments}}
        if isinstance(tool.get("outputSchema"), Mapping):
            output = dict(tool["outputSchema"])
            rpc["result"] = {
                "if": {"required": ["isError"], "properties": {"isError": {"const": True}}},
                "else": {"required": ["structuredContent"], "properties": {"structuredContent": output}},
            }
        document: dict[str, Any] = {
            "id": (prefix + _ID_UNSAFE.sub("-", name))[:128],
            "route": route,
            "operation": {"method": "POST", "path": path},
            "jsonrpc": rpc,
        }
        if tool.get("description"):
            document["description"] = str(tool["description"])
        documents.append(document)
    documents.append(
        {
            "id": f"{prefix}tools-list"[:128],
            "description": "Tool-set pin: tools/list must answer exactly the tools imported (tool poisoning, or an "
            "unannounced change, is refused; re-import to accept a new tool set).",
            "route": route,
            "operation": {"method": "POST", "path": path},
            "jsonrpc": {
                "method": "tools/list",
                "result": {
                    "type": "object",
                    "required": ["tools"],
                    "properties": {"tools": {"type": "array", "items": {"enum": [dict(t) for t in tools]}}},
                },
            },
        }
    )
    return documents


async def list_tools(url: str, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    """Every tool the MCP server at ``url`` (its streamable-HTTP endpoint) declares."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "agent-gateway-import", "version": "1"}}  # fmt: skip
    _, session_id = await _call(session, url, headers, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                                        "params": init})  # fmt: skip
    if session_id:
        headers[SESSION_HEADER] = session_id
    notice = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with session.post(url, data=orjson.dumps(notice), headers=headers) as answer:
        await answer.read()
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for page in range(2, 1002):  # bounded: a server that pages forever is not followed forever
        params = {"cursor": cursor} if cursor else {}
        result, _ = await _call(session, url, headers, {"jsonrpc": "2.0", "id": page, "method": "tools/list",
                                                        "params": params})  # fmt: skip
        tools += [t for t in result.get("tools", ()) if isinstance(t, dict) and isinstance(t.get("name"), str)]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    return tools


async def _call(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], message: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The ``result`` of one JSON-RPC request (answered as JSON or as an SSE stream) and the session id."""
    try:
        async with session.post(url, data=orjson.dumps(message), headers=headers) as answer:
            body = await answer.read()
            status, content_type = answer.status, answer.content_type
            session_id = answer.headers.get(SESSION_HEADER)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ImportFailed(f"cannot reach the MCP server at {url}: {exc or type(exc).__name__}") from None
    if status >= 400:
        raise ImportFailed(f"the MCP server at {url} answered {message['method']} with HTTP {status}")
    response = _response(body, content_type, message["id"])
    if response is None:
        raise ImportFailed(f"{url} did not answer {message['method']} as an MCP server would")
    if "error" in response:
        raise ImportFailed(f"the MCP server refused {message['method']}: {response['error'].get('message')}")
    result = response.get("result")
    return (result if isinstance(result, dict) else {}), session_id


def _response(body: bytes, content_type: str, request_id: Any) -> dict[str, Any] | None:
    candidates: list[Any] = []
    try:
        if content_type == "text/event-stream":
            candidates = [orjson.loads(e.data) for e in SSEParser().feed(body + b"\n\n") if e.has_data and e.data]
        else:
            candidates = [orjson.loads(body)]
    except orjson.JSONDecodeError:
        return None
    return next((c for c in candidates if isinstance(c, dict) and c.get("id") == request_id), None)
