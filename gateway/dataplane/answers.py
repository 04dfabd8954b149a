"""Checking answers that are not one JSON document per contract: JSON-RPC responses and event streams.

- A JSON-RPC response does not name its method: it is paired with the call that has its ``id`` (batches and
  SSE-streamed responses included) and checked against that call's contract (``jsonrpc.result`` or
  ``jsonrpc.error``), at pointer ``/result/...`` (``/<i>/result/...`` in a batch).
- An event stream is checked event by event as it passes (``text/event-stream``), never held whole: each
  ``data:`` event is parsed as JSON and checked (``events`` schemas of REST operations, or the JSON-RPC response
  an MCP/A2A server streams). Comments, keep-alives and OpenAI's ``[DONE]`` are relayed unchecked. A violating
  event is not relayed: the stream ends with an error event instead (a JSON-RPC error with the call's ``id``, or
  ``{"error": …}`` as OpenAI-style clients read it) and the verdict is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import orjson

from gateway.contracts.validation import CompiledContract, CompiledSchema, is_json_media_type
from gateway.contracts.validation import Verdict as SchemaVerdict
from gateway.dataplane.exchange import Exchange, RpcCall
from gateway.dataplane.verdicts import judge
from gateway.errors import ContractViolation, Violation
from gateway.protocols import jsonrpc
from gateway.protocols.openai import (
    DeltaAccumulator,
    SchemaCheck,
    check_json_text,
    message_contents,
    requested_schema,
    stream_error,
)
from gateway.protocols.sse import Event, serialize, should_skip
from gateway.redaction import Redactor

EVENT_STREAM = "text/event-stream"
EventCheck = Callable[[Event], bytes | None]
"""Checks one event: ``None`` relays it as it was; bytes end the stream with them instead."""


def answers_checked(exchange: Exchange) -> bool:
    """Whether any call of the body expects an answer that a contract has a schema for."""
    return any(
        call.message.kind is jsonrpc.Kind.REQUEST
        and call.contract is not None
        and (call.contract.rpc_result is not None or call.contract.rpc_error is not None)
        for call in exchange.rpc_calls
    )


def _schema(contract: CompiledContract, message: jsonrpc.Message) -> tuple[CompiledSchema | None, str]:
    if message.kind is jsonrpc.Kind.RESULT:
        return contract.rpc_result, "/result"
    return contract.rpc_error, "/error"


def check_rpc_message(exchange: Exchange, pending: jsonrpc.Pending, calls: dict[int, RpcCall], message: jsonrpc.Message,
                      prefix: str, limit: int) -> None:  # fmt: skip
    """Judge one JSON-RPC response against the contract of the call it answers (raises when it is refused)."""
    request = pending.resolve(message)
    call = calls.get(id(request)) if request is not None else None
    if call is None or call.contract is None:
        return
    schema, member = _schema(call.contract, message)
    if schema is None:
        return
    violations, total = schema.check(message.body, limit)
    shifted = tuple(v.under(prefix + member) for v in violations)
    judge(exchange, call.contract, "response", shifted, total)


def _pairing(exchange: Exchange) -> tuple[jsonrpc.Pending, dict[int, RpcCall]]:
    requests = [call for call in exchange.rpc_calls if call.message.kind is jsonrpc.Kind.REQUEST]
    return jsonrpc.Pending(call.message for call in requests), {id(call.message): call for call in requests}


def check_rpc_answer(exchange: Exchange, body: bytes, content_type: str, limit: int) -> None:
    """Judge a JSON answer to JSON-RPC calls; an answer that is not JSON-RPC at all is a violation."""
    pending, calls = _pairing(exchange)
    try:
        envelope = jsonrpc.classify(orjson.loads(body)) if is_json_media_type(content_type) else jsonrpc.NOT_JSONRPC
    except orjson.JSONDecodeError:
        envelope = jsonrpc.NOT_JSONRPC
    if not envelope.is_jsonrpc:
        contract = next(call.contract for call in calls.values() if call.contract is not None)
        judge(exchange, contract, "response", (Violation("", "json", "the answer is not a JSON-RPC response"),), 1)
        return
    for i, message in enumerate(envelope.messages):
        check_rpc_message(exchange, pending, calls, message, f"/{i}" if envelope.batch else "", limit)


def rpc_event_check(exchange: Exchange, limit: int, redactor: Redactor) -> EventCheck:
    """An :data:`EventCheck` for a stream of JSON-RPC messages (MCP, A2A); ends with a JSON-RPC error (its
    violation messages hidden where they could quote a redacted value, as every refusal's are)."""
    pending, calls = _pairing(exchange)

    def check(event: Event) -> bytes | None:
        if should_skip(event):
            return None
        try:
            message = jsonrpc.classify_message(orjson.loads(event.data))
        except orjson.JSONDecodeError:
            message = None
        if message is None or message.kind not in (jsonrpc.Kind.RESULT, jsonrpc.Kind.ERROR):
            return None  # a notification or a server-to-client request: not an answer to a call
        try:
            check_rpc_message(exchange, pending, calls, message, "", limit)
        except ContractViolation as violation:
            dialect = exchange.rpc_dialect
            refused = redactor.refusal(violation)
            problem = refused.problem(exchange.trace_id)
            code = jsonrpc.error_code("response", dialect)
            error = jsonrpc.error_response(message.id, code, refused.detail, jsonrpc.error_data(problem, dialect))
            return serialize(orjson.dumps(error).decode(), event=event.event if event.event != "message" else None)
        return None

    return check


def structured_schema(exchange: Exchange, contract: CompiledContract) -> tuple[bool, SchemaCheck | None]:
    """Whether message contents must hold JSON (``structured_output``), and the schema that JSON must meet: the
    contract's own, else the ``json_schema`` the caller asked for in ``response_format`` (``json_object``: any
    JSON). A caller that asked for neither gets prose, which is not checked."""
    if contract.spec.structured_output is None:
        return False, None
    if contract.structured_output is not None:
        return True, contract.structured_output
    try:
        request = orjson.loads(exchange.request_body or b"")
    except orjson.JSONDecodeError:
        return False, None
    asked = requested_schema(request)
    if asked is None:
        response_format = request.get("response_format") if isinstance(request, dict) else None
        return isinstance(response_format, dict) and response_format.get("type") == "json_object", None
    try:
        return True, CompiledSchema(asked.schema)
    except (ValueError, jsonschema_rs.ValidationError):
        return True, None  # the caller's schema does not compile: the content must still be JSON


def check_structured(exchange: Exchange, contract: CompiledContract, document: Any, limit: int) -> None:
    """Judge the JSON inside each choice's message content (raises when it is refused)."""
    wanted, schema = structured_schema(exchange, contract)
    if wanted:
        for content in message_contents(document):
            judge(exchange, contract, "response", *check_json_text(content, schema, limit))


def schema_event_check(
    exchange: Exchange, contract: CompiledContract, schema: CompiledSchema | None, limit: int, redactor: Redactor
) -> EventCheck:
    """An :data:`EventCheck` for the ``events`` schema of a REST operation and, with ``structured_output``, the
    JSON its streamed message contents add up to (checked when a choice finishes); ends with
    ``{"error": problem}``."""
    wanted, content_schema = structured_schema(exchange, contract)
    contents = DeltaAccumulator() if wanted else None

    def verdicts(event: Event) -> list[SchemaVerdict]:
        if contents is None and schema is not None and schema.accepts(event.data):
            return []  # valid, and nothing reads its contents: no document built
        try:
            document = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            return [((Violation("", "json", f"the event is not valid JSON: {exc}"),), 1)]
        found = [schema.check(document, limit)] if schema is not None else []
        if contents is not None:
            found += [check_json_text(contents.content(i), content_schema, limit) for i in contents.feed(document)]
        return found

    def check(event: Event) -> bytes | None:
        if should_skip(event):
            return None
        try:
            for verdict in verdicts(event):
                judge(exchange, contract, "response", *verdict)
        except ContractViolation as refused:
            shown = redactor.refusal(refused).problem(exchange.trace_id)
            return serialize(orjson.dumps(stream_error(shown)).decode())
        return None

    return check
