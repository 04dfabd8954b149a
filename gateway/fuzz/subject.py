"""What is fuzzed and how an answer is judged: a REST body, or the ``params`` of one JSON-RPC method or MCP tool.

Judging uses the gateway's own compiled contract (:mod:`gateway.contracts.validation`): the same parsing, the same
validators, the same violation wording and pointers, and the verdict vocabulary of :mod:`gateway.outcomes`. What
the fuzzer calls a breach is therefore exactly what the gateway would refuse in front of that agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.contracts.validation import NO_VIOLATIONS, CompiledContract, CompiledSchema, Verdict, parse_json_payload
from gateway.errors import Violation
from gateway.outcomes import Verdict as Outcome
from gateway.protocols.jsonrpc import TOOLS_CALL
from gateway.protocols.sse import SSEParser, should_skip

CALL_ID = 1
"""The id of every fuzzed JSON-RPC call (one call per request, so the answer is paired by it)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back for one request: the HTTP answer and the gateway's ``X-Contract-Verdict``, if any."""

    status: int
    content_type: str
    encoding: str | None
    body: bytes
    gateway_verdict: str | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict on one answer; ``ok`` is whether the agent kept its side of the contract."""

    outcome: Outcome
    ok: bool
    reason: str = ""
    violations: tuple[Violation, ...] = ()
    total: int = 0


class Subject:
    """One contract's request side as fuzz input and its answer side as the oracle."""

    def __init__(self, contract: CompiledContract, limit: int = 50) -> None:
        self.contract = contract
        self.limit = limit
        rpc = contract.spec.rpc
        self.rpc = rpc
        if rpc is not None:
            self._checker: CompiledSchema | None = contract.rpc_params
            self.schema: Any = rpc.params if rpc.params is not None else {"type": "object"}
            if rpc.method == TOOLS_CALL and rpc.tool is not None:  # the tool is named in params.name
                name = {"type": "object", "required": ["name"], "properties": {"name": {"const": rpc.tool}}}
                self.schema = {"allOf": [self.schema, name]}
        elif contract.request_body is not None:
            self._checker, self.schema = contract.request_body, contract.spec.request_body
        else:
            raise ValueError(f"contract {contract.id!r} has no request body or JSON-RPC params schema to fuzz")
        operation = contract.spec.operation
        self.method = operation.method
        self.path = "/".join("fuzz" if s.startswith("{") else s for s in operation.path.split("/"))

    def accepts(self, value: Any) -> bool:
        """Whether the gateway would find ``value`` (a body, or JSON-RPC params) valid."""
        if (
            self.rpc is not None
            and self.rpc.tool is not None
            and (not isinstance(value, dict) or value.get("name") != self.rpc.tool)
        ):
            return False
        return self._checker is None or self._checker.check(value, 0)[1] == 0

    def violations(self, value: Any) -> tuple[Violation, ...]:
        """Why the gateway would refuse ``value``, pointers as its problem documents give them."""
        found = self._checker.check(value, self.limit)[0] if self._checker is not None else ()
        return tuple(v.under("/params") for v in found) if self.rpc is not None else found

    def envelope(self, value: Any) -> Any:
        """The JSON document sent: the value itself, or a JSON-RPC call carrying it as ``params``."""
        if self.rpc is None:
            return value
        return {"jsonrpc": "2.0", "id": CALL_ID, "method": self.rpc.method, "params": value}

    def judge_valid(self, answer: Answer) -> Judgement:
        """An answer to a valid request: it must be valid under the schema for its status."""
        refused = _gateway_refusal(answer)
        if refused is not None:
            return refused
        if self.rpc is None:
            schema = self.contract.response_schema(answer.status)
            if schema is not None:
                _, verdict = self.contract.check_response(
                    schema, answer.body, answer.content_type, answer.encoding, self.limit
                )
                return _checked(verdict, "the answer breaks the contract's response schema")
        elif answer.status < 500:
            return self._judge_rpc(answer)
        if answer.status >= 500:
            return Judgement(Outcome.UPSTREAM_ERROR, False, f"a valid request was answered with {answer.status}")
        if answer.status >= 400:
            return Judgement(Outcome.UNCHECKED, False, f"a valid request was refused with {answer.status}")
        return Judgement(Outcome.UNCHECKED, True)

    def _judge_rpc(self, answer: Answer) -> Judgement:
        message, verdict = _rpc_message(answer)
        if verdict[1]:
            return _checked(verdict, "the answer is not a JSON-RPC response")
        if "result" in message:
            schema, member, reason = self.contract.rpc_result, "/result", "the result breaks the contract"
        else:
            schema, member, reason = self.contract.rpc_error, "/error", "a valid call was answered with an error"
        checked = schema.check(message.get(member[1:]), self.limit) if schema is not None else NO_VIOLATIONS
        judged = _checked((tuple(v.under(member) for v in checked[0]), checked[1]), reason)
        if member == "/error" and judged.ok:
            return Judgement(Outcome.UNCHECKED, False, reason)
        return judged

    def refused(self, answer: Answer) -> bool:
        """Whether an answer to a near-valid request refuses it: a 4xx, or a JSON-RPC error response."""
        if 400 <= answer.status < 500:
            return True
        if self.rpc is None or answer.status >= 500:
            return False
        message, verdict = _rpc_message(answer)
        return not verdict[1] and "error" in message


def _checked(verdict: Verdict, reason: str) -> Judgement:
    violations, total = verdict
    if total == 0:
        return Judgement(Outcome.VALID, True)
    return Judgement(Outcome.RESPONSE_INVALID, False, reason, violations, total)


def _gateway_refusal(answer: Answer) -> Judgement | None:
    """Through a gateway, its own refusal (a problem document under a failing verdict) is the judgement."""
    if answer.gateway_verdict in (None, Outcome.VALID, Outcome.UNCHECKED):
        return None
    try:
        problem = orjson.loads(answer.body)
        outcome = Outcome(answer.gateway_verdict)
    except (orjson.JSONDecodeError, ValueError):
        return None
    if not isinstance(problem, dict):
        return None
    listed = [v for v in problem.get("violations") or () if isinstance(v, dict)]
    violations = tuple(Violation(str(v.get("pointer")), str(v.get("keyword")), str(v.get("message"))) for v in listed)
    reason = f"the gateway refused the handoff: {problem.get('title', outcome.value)}"
    return Judgement(outcome, False, reason, violations, int(problem.get("violation_count") or len(violations)))


def _rpc_message(answer: Answer) -> tuple[dict[str, Any], Verdict]:
    """The JSON-RPC response to the fuzzed call, from a JSON body or an event stream; or why there is none."""
    documents: list[Any]
    if answer.content_type == "text/event-stream":
        events = SSEParser().feed(answer.body + b"\n\n")
        documents = []
        for event in events:
            if not should_skip(event):
                parsed, verdict = parse_json_payload(event.data.encode(), "application/json", None)
                documents.append(parsed if not verdict[1] else None)
    else:
        parsed, verdict = parse_json_payload(answer.body, answer.content_type, answer.encoding)
        if verdict[1]:
            return {}, verdict
        documents = parsed if isinstance(parsed, list) else [parsed]
    for document in documents:
        if (
            isinstance(document, dict)
            and document.get("id") == CALL_ID
            and ("result" in document or "error" in document)
        ):
            return document, NO_VIOLATIONS
    return {}, ((Violation("", "required", f"no JSON-RPC response with id {CALL_ID} in the answer"),), 1)
