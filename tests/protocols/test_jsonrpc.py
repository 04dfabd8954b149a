"""JSON-RPC envelopes: classification, operation keys, pairing by id, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocols.jsonrpc import (
    BAD_REQUEST_TYPE,
    ERROR_INFO_TYPE,
    NOT_JSONRPC,
    Dialect,
    Kind,
    OperationKey,
    Pending,
    classify,
    error_code,
    refusal,
    refusal_status,
)

PROBLEM = {
    "type": "https://agent-gateway.dev/problems/request_invalid",
    "title": "Request violates contract",
    "status": 422,
    "detail": "The request violates contract 'tools.add' version 1: 1 violation(s).",
    "violations": [{"pointer": "/params/arguments/a", "keyword": "type", "message": "'x' is not of type 'integer'"}],
    "trace_id": "t1",
}


def call(method: str, id: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (call("tools/list"), Kind.REQUEST),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, Kind.NOTIFICATION),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, Kind.RESULT),
        ({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}, Kind.ERROR),
        ({"jsonrpc": "2.0", "id": 1}, Kind.INVALID),
        ({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": ""}}, Kind.INVALID),
        ({"jsonrpc": "2.0", "id": True, "method": "x"}, Kind.INVALID),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, Kind.INVALID),
        ({"jsonrpc": "2.0", "id": 1, "method": "x", "params": "no"}, Kind.INVALID),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": "1", "message": "m"}}, Kind.INVALID),
    ],
)
def test_classify_one_message(body: dict[str, Any], kind: Kind) -> None:
    envelope = classify(body)
    assert envelope.is_jsonrpc
    assert not envelope.batch
    assert envelope.messages[0].kind is kind


@pytest.mark.parametrize("body", [{"goal": "x"}, {"jsonrpc": "1.0", "method": "x"}, [], [1, 2], "text", None])
def test_rest_bodies_are_not_jsonrpc(body: Any) -> None:
    assert classify(body) is NOT_JSONRPC


def test_tools_call_is_keyed_by_tool_name() -> None:
    message = classify(call("tools/call", name="add", arguments={"a": 1})).messages[0]
    assert message.key == OperationKey("tools/call", "add")
    assert str(message.key) == "tools/call add"
    assert message.body == {"name": "add", "arguments": {"a": 1}}
    assert classify(call("SendMessage")).messages[0].key == OperationKey("SendMessage")
    assert str(OperationKey("SendMessage")) == "SendMessage"
    assert classify(call("prompts/get", name="p")).messages[0].tool is None


def test_batch_pairs_answers_by_id_in_any_order() -> None:
    envelope = classify([call("a", id=1), {"jsonrpc": "2.0", "method": "note"}, call("b", id="1"), 7])
    assert envelope.batch
    assert [m.kind for m in envelope.messages] == [Kind.REQUEST, Kind.NOTIFICATION, Kind.REQUEST, Kind.INVALID]
    pending = Pending(envelope.messages)
    assert len(pending) == 2
    answers = classify([{"jsonrpc": "2.0", "id": "1", "result": 2}, {"jsonrpc": "2.0", "id": 1.0, "result": 1}])
    paired = [pending.resolve(m) for m in answers.messages]
    assert [r.method for r in paired if r is not None] == ["b", "a"]
    assert len(pending) == 0


def test_pending_ignores_unsolicited_and_unpairable_messages() -> None:
    pending = Pending(classify(call("tools/call", id=3, name="add")).messages)
    stream = [
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        {"jsonrpc": "2.0", "id": 0, "method": "sampling/createMessage", "params": {}},
        {"jsonrpc": "2.0", "id": 4, "result": {}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad"}},
    ]
    assert [pending.resolve(classify(event).messages[0]) for event in stream] == [None] * 4
    assert [m.tool for m in pending.outstanding] == ["add"]
    request = pending.resolve(classify({"jsonrpc": "2.0", "id": 3, "error": {"code": 1, "message": "m"}}).messages[0])
    assert request is not None
    assert request.tool == "add"
    assert pending.outstanding == ()


def test_repeated_ids_are_answered_first_in_first_out() -> None:
    pending = Pending(classify([call("first", id=9), call("second", id=9)]).messages)
    answer = classify({"jsonrpc": "2.0", "id": 9, "result": None}).messages[0]
    assert [getattr(pending.resolve(answer), "method", None) for _ in range(3)] == ["first", "second", None]


def test_refusal_keeps_the_id_and_puts_the_problem_in_data() -> None:
    envelope = classify(call("tools/call", id="req-7", name="add"))
    answer = refusal(envelope, PROBLEM, error_code("request"), Dialect.MCP)
    assert answer == {
        "jsonrpc": "2.0",
        "id": "req-7",
        "error": {"code": -32602, "message": PROBLEM["detail"], "data": PROBLEM},
    }
    assert refusal_status(envelope) == 200


def test_a2a_refusal_data_is_typed_details() -> None:
    answer = refusal(classify(call("SendMessage", id=2)), PROBLEM, error_code("response", Dialect.A2A), Dialect.A2A)
    assert isinstance(answer, dict)
    error = answer["error"]
    assert error["code"] == -32006
    info, bad_request = error["data"]
    assert info["@type"] == ERROR_INFO_TYPE
    assert info["metadata"] == PROBLEM
    assert info["reason"] == "REQUEST_INVALID"
    assert bad_request == {
        "@type": BAD_REQUEST_TYPE,
        "fieldViolations": [{"field": "/params/arguments/a", "description": "'x' is not of type 'integer'"}],
    }


def test_batch_refusal_answers_each_request_and_no_notification() -> None:
    envelope = classify([call("a", id=1), {"jsonrpc": "2.0", "method": "n"}, {"jsonrpc": "2.0"}])
    answer = refusal(envelope, PROBLEM, error_code("request"))
    assert isinstance(answer, list)
    assert [(a["id"], a["error"]["code"]) for a in answer] == [(1, -32602), (None, -32600)]


def test_notifications_get_no_jsonrpc_refusal() -> None:
    envelope = classify({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert refusal(envelope, PROBLEM, error_code("request")) is None
    assert refusal_status(envelope) is None


def test_error_codes() -> None:
    assert error_code("request") == -32602
    assert error_code("request", malformed=True) == -32600
    assert error_code("response") == -32603
    assert error_code("response", Dialect.MCP) == -32603
    assert error_code("response", Dialect.A2A) == -32006
