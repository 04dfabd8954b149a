"""Each official client works against its real peer directly (no gateway yet): the fixtures are sound."""

from __future__ import annotations

import json

import httpx
import pytest
from a2a.helpers.proto_helpers import get_artifact_text
from a2a.types import TaskState
from mcp import MCPError
from openai.types.shared_params import ResponseFormatJSONSchema

from tests.protocols.conftest import Peer
from tests.protocols.peers import FakeChat, Reply, a2a_send, mcp_call_tool, mcp_list_tools, mcp_session, openai_client


async def test_mcp_client_lists_and_calls_tools(mcp_any_peer: Peer) -> None:
    peer = mcp_any_peer
    tools = {tool.name: tool for tool in await mcp_list_tools(peer.url)}
    assert set(tools) == {"add", "echo"}
    assert tools["add"].input_schema["required"] == ["a", "b"]
    assert tools["add"].output_schema is not None

    result = await mcp_call_tool(peer.url, "add", {"a": 2, "b": 40})
    assert result.structured_content == {"result": 42}
    assert not result.is_error


async def test_mcp_bad_arguments_are_a_tool_error_and_a_failed_request_an_mcp_error(mcp_peer: Peer) -> None:
    async with mcp_session(mcp_peer.url) as session:
        result = await session.call_tool("add", {"a": "x", "b": 1})
        assert result.is_error  # MCP reports argument errors inside the result, not as JSON-RPC errors
        with pytest.raises(MCPError) as refused:
            await session.get_prompt("missing")
    assert "Unknown prompt" in refused.value.message


async def test_mcp_answers_a_post_as_sse_with_the_request_id(mcp_peer: Peer) -> None:
    """The wire shape the gateway will pair by id: an SSE event whose data is the JSON-RPC response."""
    initialize = {
        "jsonrpc": "2.0",
        "id": "init-1",
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            mcp_peer.url, json=initialize, headers={"Accept": "application/json, text/event-stream"}
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["mcp-session-id"]
    data = [line.removeprefix("data: ") for line in answer.text.splitlines() if line.startswith("data: ")]
    assert json.loads(data[-1])["id"] == "init-1"


@pytest.mark.parametrize("streaming", [False, True])
async def test_a2a_client_sends_a_message(a2a_peer: Peer, streaming: bool) -> None:
    events = await a2a_send(a2a_peer.url, "hello", streaming=streaming)
    final = events[-1]
    if streaming:
        assert [e.WhichOneof("payload") for e in events] == ["task", "artifact_update", "status_update"]
        assert get_artifact_text(events[1].artifact_update.artifact) == "echo: hello"
        assert final.status_update.status.state == TaskState.TASK_STATE_COMPLETED
    else:
        assert len(events) == 1
        assert final.task.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(final.task.artifacts[0]) == "echo: hello"


async def test_a2a_card_names_the_agent_url(a2a_peer: Peer) -> None:
    async with httpx.AsyncClient() as client:
        card = (await client.get(a2a_peer.base + "/.well-known/agent-card.json")).json()
    assert [i["url"] for i in card["supportedInterfaces"]] == [a2a_peer.base + "/"]


async def test_a2a_refuses_bad_params_with_http_200_and_typed_details(a2a_peer: Peer) -> None:
    bad = {"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {"message": {}}}
    async with httpx.AsyncClient() as client:
        answer = await client.post(a2a_peer.url + "/", json=bad, headers={"A2A-Version": "1.0"})
    assert answer.status_code == 200
    error = answer.json()["error"]
    assert error["code"] == -32602
    assert all("@type" in detail for detail in error["data"])


async def test_openai_client_gets_scripted_structured_output(chat_peer: FakeChat) -> None:
    chat_peer.replies.append('{"answer": 42}')
    response_format: ResponseFormatJSONSchema = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    async with openai_client(chat_peer.url) as client:
        completion = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "?"}], response_format=response_format
        )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": 42}
    assert chat_peer.requests[0]["response_format"] == response_format


async def test_openai_client_streams_chunks(chat_peer: FakeChat) -> None:
    chat_peer.replies.append("a longer reply, in several chunks")
    async with openai_client(chat_peer.url) as client:
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "?"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert len(chunks) > 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a longer reply, in several chunks"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_openai_client_raises_on_an_error_event_mid_stream(chat_peer: FakeChat) -> None:
    """How a gateway can end a stream so the SDK user sees why: an event whose data has an ``error`` member."""
    chat_peer.replies.append(Reply("0123456789abcdef", inject={2: b'data: {"error": {"message": "cut here"}}\n\n'}))
    async with openai_client(chat_peer.url) as client:
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "?"}], stream=True
        )
        with pytest.raises(Exception, match="cut here"):
            async for _ in stream:
                pass
