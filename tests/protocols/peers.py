"""Real protocol peers on loopback, built with the official SDKs, and the official clients to talk to them.

- MCP: an ``mcp`` 2.x ``MCPServer`` (streamable HTTP) with tools ``add`` and ``echo``; the client side is the
  SDK's ``streamable_http_client`` + ``ClientSession`` (initialize handshake, as 2025-11-25 clients do).
- A2A: an ``a2a-sdk`` 1.x JSON-RPC server whose agent echoes the text it gets as a task artifact (streaming
  capable: task → artifact update → completed status); the client side is ``a2a.client.create_client``.
- OpenAI: a small aiohttp app speaking the Chat Completions wire format (JSON or ``stream: true`` SSE ending
  with ``data: [DONE]``) that answers scripted content; the client side is the ``openai`` SDK.

The ASGI servers run under uvicorn as a task of the test's own event loop, on a socket bound before the app is
built (so an A2A card can name its own URL), and are shut down, socket closed, when the context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
    SendMessageRequest,
    StreamResponse,
)
from aiohttp import web
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, Tool
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.types import ASGIApp

from gateway.protocols.sse import DONE, serialize

AppFactory = Callable[[str], ASGIApp]


class _Server(uvicorn.Server):
    """uvicorn's server with an event set once it listens (instead of polling ``started``)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def serve_asgi(build: AppFactory) -> AsyncIterator[str]:
    """Serve the app ``build(base_url)`` returns on 127.0.0.1 (a free port) for the duration of the context."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(build(base), log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        server = _Server(config)
        # _serve, not serve: serve() would swap the process's signal handlers while a test runs.
        task = asyncio.create_task(server._serve(sockets=[sock]))
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()  # startup failed: raise its error here
            raise RuntimeError("the ASGI server stopped during startup")
        try:
            yield base
        finally:
            server.should_exit = True
            await task
    finally:
        sock.close()


# --- MCP ------------------------------------------------------------------------------------------------------


def mcp_server(configure: Callable[[MCPServer], None] | None = None) -> MCPServer:
    """An MCP server with ``add(a, b) -> int`` and ``echo(text) -> str``; ``configure`` may add more tools."""
    server = MCPServer("protocol-peer")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    if configure is not None:
        configure(server)
    return server


def mcp_app(server: MCPServer, *, json_response: bool = False) -> AppFactory:
    """The streamable-HTTP app of ``server`` at ``/mcp`` (SSE answers, or plain JSON with ``json_response``)."""
    return lambda _base: server.streamable_http_app(json_response=json_response)


@contextlib.asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    """An initialized official MCP client session on the streamable-HTTP endpoint ``url`` (``.../mcp``)."""
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def mcp_list_tools(url: str) -> list[Tool]:
    async with mcp_session(url) as session:
        return (await session.list_tools()).tools


async def mcp_call_tool(url: str, name: str, arguments: Mapping[str, Any]) -> CallToolResult:
    async with mcp_session(url) as session:
        return await session.call_tool(name, dict(arguments))


# --- A2A ------------------------------------------------------------------------------------------------------


class EchoAgent(AgentExecutor):
    """Answers each message with a task whose one artifact is ``"echo: <text>"``, then completes it."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.add_artifact([new_text_part(f"echo: {context.get_user_input()}")], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError("the echo agent finishes before it could be cancelled")


def a2a_card(base: str) -> AgentCard:
    return AgentCard(
        name="echo",
        description="Echoes the text it is sent.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=base + "/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Echo the text", tags=["echo"])],
    )


def a2a_app(base: str) -> ASGIApp:
    """The echo agent's card at ``/.well-known/agent-card.json`` and its JSON-RPC endpoint at ``/``."""
    card = a2a_card(base)
    handler = DefaultRequestHandler(agent_executor=EchoAgent(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


async def a2a_send(url: str, text: str, *, streaming: bool) -> list[StreamResponse]:
    """Resolve the agent card at ``url`` with the official client, send ``text`` and collect every answer
    (``SendStreamingMessage`` when ``streaming``, else ``SendMessage``)."""
    client = await create_client(url, ClientConfig(streaming=streaming))
    async with client:
        request = SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))
        return [event async for event in client.send_message(request)]


# --- OpenAI chat completions ----------------------------------------------------------------------------------


@dataclass
class Reply:
    """A scripted answer; ``inject`` replaces stream chunk *n* (0: the role chunk) with raw bytes."""

    content: str
    inject: dict[int, bytes] = field(default_factory=dict)


@dataclass
class FakeChat:
    """The scripted chat server's state: answers to give (else it echoes the last user message) and the
    request bodies it received."""

    replies: deque[Reply | str] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    chunk_size: int = 8
    url: str = ""

    def next_reply(self, body: Mapping[str, Any]) -> Reply:
        if self.replies:
            reply = self.replies.popleft()
            return reply if isinstance(reply, Reply) else Reply(reply)
        messages = body.get("messages") or [{}]
        return Reply(str(messages[-1].get("content", "")))


def _completion(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
        for i in range(int(body.get("n") or 1))
    ]
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    head = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"]}
    return head | {"choices": choices, "usage": usage}


def _chunks(body: Mapping[str, Any], content: str, size: int) -> list[dict[str, Any]]:
    head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time())}
    head["model"] = body["model"]
    pieces = [content[i : i + size] for i in range(0, len(content), size)]
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": piece}, None) for piece in pieces]
    deltas.append(({}, "stop"))
    n = int(body.get("n") or 1)
    chunks = [
        head | {"choices": [{"index": i, "delta": delta, "finish_reason": reason} for i in range(n)]}
        for delta, reason in deltas
    ]
    options = body.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        chunks.append(head | {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    return chunks


def chat_app(chat: FakeChat) -> web.Application:
    """An aiohttp app for ``POST /v1/chat/completions`` answering from ``chat``."""

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat.requests.append(body)
        if not isinstance(body.get("messages"), list) or "model" not in body:
            error = {"message": "messages and model are required", "type": "invalid_request_error", "param": None}
            return web.json_response({"error": error | {"code": None}}, status=400)
        reply = chat.next_reply(body)
        if not body.get("stream"):
            return web.json_response(_completion(body, reply.content))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for n, chunk in enumerate(_chunks(body, reply.content, chat.chunk_size)):
            await response.write(reply.inject.get(n) or serialize(json.dumps(chunk)))
        await response.write(serialize(DONE))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def openai_client(url: str) -> AsyncOpenAI:
    """The official client for the chat server at ``url`` (no retries: a test sees each answer as sent)."""
    return AsyncOpenAI(base_url=url + "/v1", api_key="test-key", max_retries=0)
