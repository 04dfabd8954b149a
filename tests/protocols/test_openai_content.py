"""Assistant content of chat completions, the JSON inside it, and the error event a refused stream ends with."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import APIError

from gateway.contracts.validation import CompiledSchema
from gateway.protocols.openai import (
    Content,
    DeltaAccumulator,
    check_json_text,
    message_contents,
    requested_schema,
    stream_error,
)
from gateway.protocols.sse import DONE, SSEParser, serialize, should_skip
from tests.protocols.peers import FakeChat, Reply, openai_client

SCHEMA = {
    "type": "object",
    "required": ["steps"],
    "properties": {"steps": {"type": "array", "items": {"type": "string"}}},
}
REQUEST: dict[str, Any] = {
    "model": "fake",
    "messages": [{"role": "user", "content": "plan"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "plan", "schema": SCHEMA, "strict": True}},
}


def test_requested_schema_reads_both_apis() -> None:
    assert requested_schema(REQUEST) == requested_schema(
        {"text": {"format": {"type": "json_schema", "name": "plan", "schema": SCHEMA, "strict": True}}}
    )
    found = requested_schema(REQUEST)
    assert found is not None
    assert found.schema == SCHEMA
    assert found.strict
    assert requested_schema({"response_format": {"type": "json_object"}}) is None
    assert requested_schema({"model": "x"}) is None
    assert requested_schema([]) is None


def test_content_pointers_continue_into_the_json_string() -> None:
    completion = {
        "choices": [
            {"index": 0, "message": {"content": '{"steps": ["a", 2]}'}},
            {"index": 1, "message": {"content": None}},
        ]
    }
    first, second = message_contents(completion)
    assert first == Content(0, "/choices/0/message/content", '{"steps": ["a", 2]}')
    violations, total = check_json_text(first, CompiledSchema(SCHEMA), limit=10)
    assert total == 1
    assert [(v.pointer, v.keyword) for v in violations] == [("/choices/0/message/content/steps/1", "type")]
    assert check_json_text(second, None, 10)[0][0].keyword == "contentMediaType"


def test_prose_instead_of_json_is_one_violation_at_the_string() -> None:
    violations, total = check_json_text(
        Content(0, "/choices/0/message/content", "Sure! Here is"), CompiledSchema(SCHEMA), 10
    )
    assert total == 1
    assert violations[0].pointer == "/choices/0/message/content"
    assert violations[0].keyword == "contentMediaType"


async def test_streamed_content_is_checked_when_its_choice_finishes(chat_peer: FakeChat) -> None:
    """Accumulate the deltas of the real wire stream the openai client reads, event by event."""
    chat_peer.replies.append('{"steps": ["design", "build"]}')
    chat_peer.chunk_size = 5
    async with openai_client(chat_peer.url) as client:
        raw = await client.chat.completions.with_raw_response.create(**REQUEST, stream=True, n=2)
        body = await raw.http_response.aread()
    parser, accumulator, finished = SSEParser(max_event_bytes=4096), DeltaAccumulator(), []
    for start in range(0, len(body), 7):  # arbitrary network chunks
        for event in parser.feed(body[start : start + 7]):
            if not should_skip(event):
                finished += accumulator.feed(json.loads(event.data))
    assert finished == [0, 1]
    assert accumulator.unfinished() == []
    content = accumulator.content(1)
    assert content.pointer == "/choices/1/delta/content"
    assert check_json_text(content, CompiledSchema(SCHEMA), 10) == ((), 0)


async def test_the_openai_client_surfaces_the_problem_of_a_stream_error(chat_peer: FakeChat) -> None:
    problem = {"type": "https://agent-gateway.dev/problems/response_invalid", "detail": "chunk 2 breaks the contract"}
    chat_peer.replies.append(Reply("0123456789abcdef", inject={2: serialize(json.dumps(stream_error(problem)))}))
    async with openai_client(chat_peer.url) as client:
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "?"}], stream=True
        )
        with pytest.raises(APIError) as refused:
            async for _ in stream:
                pass
    assert refused.value.message == "chunk 2 breaks the contract"
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["problem"] == problem


def test_done_is_the_openai_sentinel() -> None:
    (event,) = SSEParser().feed(serialize(DONE))
    assert should_skip(event)


def test_a_responses_api_answer_yields_its_output_text_parts() -> None:
    document = {
        "object": "response",
        "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": '{"steps": []}'}, {"type": "refusal", "refusal": "no"}]},
        ],
    }  # fmt: skip
    (content,) = message_contents(document)
    assert content.pointer == "/output/1/content/0/text"
    assert content.text == '{"steps": []}'
