"""The agents people run, behind a live gateway, driven by their official SDKs: contracts per JSON-RPC method and
MCP tool, answers paired by ``id`` (plain JSON and SSE), refusals that reach the SDK's user with every violation,
A2A cards that keep callers on the gateway, and OpenAI-style streams checked event by event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from a2a.utils.errors import InvalidParamsError
from mcp import MCPError

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import TOKEN, gateway_config
from tests.protocols.conftest import Peer
from tests.protocols.peers import FakeChat, Reply, a2a_send, mcp_call_tool, mcp_list_tools, mcp_session, openai_client

GatewayFactory = Callable[..., Awaitable[RunningGateway]]


def rpc_contract(contract_id: str, path: str, method: str, tool: str | None = None, **schemas: Any) -> dict[str, Any]:
    rpc: dict[str, Any] = {"method": method, **schemas}
    if tool is not None:
        rpc["tool"] = tool
    return {"id": contract_id, "route": "agent", "operation": {"method": "POST", "path": path}, "jsonrpc": rpc}


async def behind(make_gateway: GatewayFactory, base: str, *contracts: dict[str, Any]) -> RunningGateway:
    gateway = await make_gateway(gateway_config([{"name": "agent", "upstream": base}]))
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        for document in contracts:
            await admin.request("PUT", f"/contracts/{document['id']}", body=document)
    return gateway


async def handoff_steps(gateway: RunningGateway) -> list[str]:
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        runs = (await admin.request("GET", "/runs"))["runs"]
        timelines = [await admin.request("GET", f"/runs/{run['run_id']}") for run in runs]
    return [h["step"] for timeline in timelines for h in timeline["handoffs"]]


SMALL_A = {"properties": {"arguments": {"properties": {"a": {"type": "integer", "maximum": 100}}}}}
RESULT_AT_MOST_4 = {"properties": {"structuredContent": {"properties": {"result": {"maximum": 4}}}}}


async def test_an_mcp_tool_call_is_checked_against_its_tools_contract(
    make_gateway: GatewayFactory, mcp_any_peer: Peer
) -> None:
    gateway = await behind(make_gateway, mcp_any_peer.base, rpc_contract("mcp.add", "/mcp", "tools/call", "add",
                                                                         params=SMALL_A))  # fmt: skip
    url = f"{gateway.data_url}/agent/mcp"
    assert (await mcp_call_tool(url, "add", {"a": 2, "b": 3})).structured_content == {"result": 5}
    assert (await mcp_call_tool(url, "echo", {"text": "a" * 500})).structured_content == {"result": "a" * 500}
    async with mcp_session(url) as session:
        with pytest.raises(MCPError) as refused:
            await session.call_tool("add", {"a": 1000, "b": 1})
    assert refused.value.error.code == -32602
    problem = refused.value.error.data
    assert problem["type"].endswith("/request_invalid")
    assert problem["contract"] == "mcp.add"
    assert [v["pointer"] for v in problem["violations"]] == ["/params/arguments/a"]
    assert "tools/call add" in await handoff_steps(gateway)
    assert {t.name for t in await mcp_list_tools(url)} == {"add", "echo"}  # other methods pass unchanged


async def test_an_mcp_result_that_breaks_the_contract_never_reaches_the_caller(
    make_gateway: GatewayFactory, mcp_any_peer: Peer
) -> None:
    """Paired by ``id`` whether the server answers with JSON or over SSE."""
    contract = rpc_contract("mcp.add", "/mcp", "tools/call", "add", result=RESULT_AT_MOST_4)
    gateway = await behind(make_gateway, mcp_any_peer.base, contract)
    url = f"{gateway.data_url}/agent/mcp"
    assert (await mcp_call_tool(url, "add", {"a": 1, "b": 2})).structured_content == {"result": 3}
    async with mcp_session(url) as session:
        with pytest.raises(MCPError) as refused:
            await session.call_tool("add", {"a": 2, "b": 3})
    assert refused.value.error.code == -32603
    problem = refused.value.error.data
    assert problem["type"].endswith("/response_invalid")
    assert problem["violations"][0]["pointer"] == "/result/structuredContent/result"


async def test_an_a2a_card_keeps_the_client_on_the_gateway_and_refusals_reach_it(
    make_gateway: GatewayFactory, a2a_peer: Peer
) -> None:
    no_parts = {"properties": {"message": {"properties": {"parts": {"maxItems": 0}}}}}
    gateway = await behind(make_gateway, a2a_peer.base, rpc_contract("a2a.send", "/", "SendMessage", params=no_parts))
    with pytest.raises(InvalidParamsError) as refused:
        await a2a_send(f"{gateway.data_url}/agent", "hello", streaming=False)
    problem = refused.value.data
    assert problem["type"].endswith("/request_invalid")
    assert problem["violations"][0]["pointer"] == "/params/message/parts"
    answers = await a2a_send(f"{gateway.data_url}/agent", "hello", streaming=True)  # no contract for streaming
    assert answers
    assert {"SendMessage", "POST /"} & set(await handoff_steps(gateway))  # both calls went through the gateway


CHUNK = {
    "type": "object",
    "required": ["choices"],
    "properties": {"choices": {"items": {"properties": {"delta": {"properties": {"content": {"type": "string"}}}}}}},
}


async def test_an_openai_stream_is_checked_event_by_event(make_gateway: GatewayFactory, chat_peer: FakeChat) -> None:
    document = {
        "id": "chat", "route": "agent", "operation": {"method": "POST", "path": "/v1/chat/completions"},
        "responses": {"200": {"type": "object", "required": ["choices"]}}, "events": {"200": CHUNK},
    }  # fmt: skip
    gateway = await behind(make_gateway, chat_peer.url, document)
    client = openai_client(f"{gateway.data_url}/agent")
    chat_peer.replies.append(Reply("hello there"))
    complete = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert complete.choices[0].message.content == "hello there"
    chat_peer.replies.append(Reply("streamed fine"))
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "streamed fine"
    bad = b'data: {"choices": [{"index": 0, "delta": {"content": 42}}]}\n\n'
    chat_peer.replies.append(Reply("never shown in full", inject={2: bad}))
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    seen: list[str] = []

    async def read_all() -> None:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as refused:
        await read_all()
    assert refused.value.body["problem"]["violations"][0]["pointer"] == "/choices/0/delta/content"  # type: ignore[index]
    assert "42" not in "".join(seen)
    await client.close()


STEPS = {"type": "object", "required": ["steps"], "properties": {"steps": {"type": "array"}}}
ASK_FOR_STEPS = {"type": "json_schema", "json_schema": {"name": "plan", "schema": STEPS, "strict": True}}


async def test_structured_output_is_checked_inside_the_content_string(
    make_gateway: GatewayFactory, chat_peer: FakeChat
) -> None:
    """``contentMediaType`` is only an annotation in 2020-12, so the JSON the caller asked for is checked by the
    contract's ``structured_output`` (here against the caller's own ``response_format`` schema)."""
    document = {
        "id": "chat", "route": "agent", "operation": {"method": "POST", "path": "/v1/chat/completions"},
        "responses": {"200": {"type": "object"}}, "structured_output": {},
    }  # fmt: skip
    gateway = await behind(make_gateway, chat_peer.url, document)
    client = openai_client(f"{gateway.data_url}/agent")
    ask: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "plan"}],
                           "response_format": ASK_FOR_STEPS}  # fmt: skip
    chat_peer.replies.append(Reply('{"steps": ["research", "write"]}'))
    answer = await client.chat.completions.create(**ask)
    assert answer.choices[0].message.content == '{"steps": ["research", "write"]}'
    chat_peer.replies.append(Reply('{"steps": "just do it"}'))
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(**ask)
    assert refused.value.status_code == 502
    assert refused.value.body["violations"][0]["pointer"] == "/choices/0/message/content/steps"  # type: ignore[index]
    chat_peer.replies.append(Reply('{"steps": 7}'))
    stream = await client.chat.completions.create(**ask, stream=True)

    async def read_all() -> str:
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    with pytest.raises(openai.APIError) as streamed:
        await read_all()
    pointer = streamed.value.body["problem"]["violations"][0]["pointer"]  # type: ignore[index]
    assert pointer == "/choices/0/delta/content/steps"
    chat_peer.replies.append(Reply("prose, as asked"))  # no response_format: prose is not checked
    prose = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert prose.choices[0].message.content == "prose, as asked"
    await client.close()
