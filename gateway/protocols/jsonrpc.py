"""JSON-RPC 2.0 envelopes as MCP and A2A use them: classify a body, key it for contract matching, pair answers.

MCP and A2A send every call to one endpoint (``POST /mcp``, ``POST /``); the operation lives in the body's
``method`` (and, for MCP ``tools/call``, the tool in ``params.name``), and an answer names only the ``id`` of the
request it answers. So the data path parses the body once, :func:`classify` it, matches contracts on each
message's :class:`OperationKey`, keeps the requests of the exchange in a :class:`Pending` map and pairs each
response (plain JSON, a batch, or one SSE event at a time) back to its request with :meth:`Pending.resolve`.

A refusal to a JSON-RPC caller must be something its SDK understands. An HTTP 422 with a problem document
reaches an MCP or A2A user as an opaque "HTTP Error 422" (the a2a client raises ``A2AClientError`` on any non-2xx
status and drops the body), so :func:`refusal` builds a JSON-RPC error response instead: same ``id``, code
-32602 / -32600 / -32603 (A2A: -32006 for an invalid agent answer), the RFC 9457 problem document in
``error.data``, sent with the HTTP status :func:`refusal_status` gives (see its docstring for the spec facts).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

JsonRpcId = str | int | float | None
"""A request id: a string or a number; ``null`` only on an error answering a request whose id was unreadable."""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
A2A_INVALID_AGENT_RESPONSE = -32006
"""A2A ``InvalidAgentResponseError`` (A2A spec §5.4): the agent's answer does not conform; the a2a client raises
``InvalidAgentResponseError`` for it, which says more than a generic -32603."""

TOOLS_CALL = "tools/call"

ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
GATEWAY_DOMAIN = "agent-gateway.dev"


class Kind(StrEnum):
    """What one JSON-RPC member of a body is."""

    REQUEST = "request"
    NOTIFICATION = "notification"
    RESULT = "result"
    ERROR = "error"
    INVALID = "invalid"
    """Says ``"jsonrpc": "2.0"`` but is not a well-formed request, notification or response: -32600."""


class Dialect(StrEnum):
    """Whose conventions a refusal follows: where the problem document goes in ``error.data``."""

    JSONRPC = "jsonrpc"
    MCP = "mcp"
    A2A = "a2a"


@dataclass(frozen=True, slots=True)
class OperationKey:
    """What a contract binds to on a JSON-RPC endpoint: the method, and for MCP ``tools/call`` the tool name.

    ``str()`` is the name used for spans, audit steps and metrics: ``"tools/call add"``, ``"SendMessage"``.
    """

    method: str
    tool: str | None = None

    def __str__(self) -> str:
        return self.method if self.tool is None else f"{self.method} {self.tool}"


@dataclass(frozen=True, slots=True)
class Message:
    """One JSON-RPC message: a request, notification, result, error, or an invalid member.

    ``id`` is meaningful when ``has_id`` (a notification has none; an error may answer with ``null``). ``body``
    is the member a schema checks: ``params`` of a request or notification, ``result`` of a result, ``error`` of
    an error (``None`` when absent or invalid).
    """

    kind: Kind
    id: JsonRpcId = None
    has_id: bool = False
    method: str | None = None
    tool: str | None = None
    body: Any = None
    reason: str | None = None
    """Why an ``INVALID`` member is invalid."""

    @property
    def key(self) -> OperationKey | None:
        """The operation of a request or notification (responses name none: pair them with :class:`Pending`)."""
        return None if self.method is None else OperationKey(self.method, self.tool)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A whole parsed body: one message, a batch of them, or not JSON-RPC at all (``messages`` empty)."""

    messages: tuple[Message, ...]
    batch: bool = False

    @property
    def is_jsonrpc(self) -> bool:
        return bool(self.messages)

    @property
    def requests(self) -> tuple[Message, ...]:
        """The members that expect an answer."""
        return tuple(m for m in self.messages if m.kind is Kind.REQUEST)


NOT_JSONRPC = Envelope(())


def _valid_id(value: Any) -> bool:
    # bool is an int in Python but not a JSON-RPC id (the A2A server rejects it too).
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _invalid(member: Mapping[str, Any], reason: str) -> Message:
    raw_id = member.get("id")
    ok = "id" in member and _valid_id(raw_id)
    return Message(Kind.INVALID, raw_id if ok else None, ok, reason=reason)


def _call(member: Mapping[str, Any], method: str) -> Message:
    params = member.get("params")
    if "params" in member and not isinstance(params, dict | list):
        return _invalid(member, "params must be an object or an array")
    tool = None
    if method == TOOLS_CALL and isinstance(params, dict) and isinstance(params.get("name"), str):
        tool = params["name"]
    if "id" not in member:
        return Message(Kind.NOTIFICATION, method=method, tool=tool, body=params)
    if not _valid_id(member["id"]):
        return _invalid(member, "id must be a string, a number or null")
    return Message(Kind.REQUEST, member["id"], True, method=method, tool=tool, body=params)


def _response(member: Mapping[str, Any]) -> Message:
    if ("result" in member) == ("error" in member):
        return _invalid(member, "a response has exactly one of result and error")
    if "id" not in member or not _valid_id(member["id"]):
        return _invalid(member, "a response carries the id of its request")
    if "result" in member:
        return Message(Kind.RESULT, member["id"], True, body=member["result"])
    error = member["error"]
    code_ok = isinstance(error, dict) and isinstance(error.get("code"), int) and not isinstance(error["code"], bool)
    if not code_ok or not isinstance(error.get("message"), str):
        return _invalid(member, "error must be an object with an integer code and a string message")
    return Message(Kind.ERROR, member["id"], True, body=error)


def classify_message(member: Any) -> Message | None:
    """Classify one member; ``None`` when it does not claim to be JSON-RPC 2.0 (no ``"jsonrpc": "2.0"``)."""
    if not isinstance(member, dict) or member.get("jsonrpc") != "2.0":
        return None
    method = member.get("method")
    if "method" in member:
        return _call(member, method) if isinstance(method, str) else _invalid(member, "method must be a string")
    return _response(member)


def classify(document: Any) -> Envelope:
    """Classify a parsed body.

    An object is JSON-RPC when it says ``"jsonrpc": "2.0"``; an array is a batch when at least one member does
    (its other members are then ``INVALID``, as JSON-RPC §6 answers them). Anything else (including ``[]``,
    which a REST body may well be) is :data:`NOT_JSONRPC`, so plain REST traffic keeps method + path matching.
    """
    if isinstance(document, list):
        members = [classify_message(item) for item in document]
        if not any(m is not None for m in members):
            return NOT_JSONRPC
        invalid = Message(Kind.INVALID, reason="not a JSON-RPC 2.0 object")
        return Envelope(tuple(m if m is not None else invalid for m in members), batch=True)
    message = classify_message(document)
    return NOT_JSONRPC if message is None else Envelope((message,))


class Pending:
    """The requests of one HTTP exchange still waiting for their responses, keyed by ``id``.

    Built from the request envelope; each response (from a JSON body, a batch, or one SSE event at a time) is
    handed to :meth:`resolve`, which returns the request it answers, so the response can be checked against the
    contract of that request's :class:`OperationKey`. Ids are compared as JSON values (``1`` and ``"1"`` differ);
    a repeated id is answered first-in first-out.
    """

    __slots__ = ("_waiting",)

    def __init__(self, requests: Iterable[Message] = ()) -> None:
        self._waiting: defaultdict[tuple[type, JsonRpcId], deque[Message]] = defaultdict(deque)
        for request in requests:
            self.add(request)

    @staticmethod
    def _slot(request_id: JsonRpcId) -> tuple[type, JsonRpcId]:
        return (str if isinstance(request_id, str) else float, request_id)

    def add(self, request: Message) -> None:
        """Wait for an answer to ``request`` (anything but a request is ignored: nothing answers it)."""
        if request.kind is Kind.REQUEST:
            self._waiting[self._slot(request.id)].append(request)

    def resolve(self, response: Message) -> Message | None:
        """The request ``response`` answers, no longer pending; ``None`` for an unsolicited or unpairable one
        (an error with ``id: null``, a server-to-client request or notification on an SSE stream)."""
        if response.kind not in (Kind.RESULT, Kind.ERROR) or response.id is None:
            return None
        slot = self._slot(response.id)
        queue = self._waiting.get(slot)
        if not queue:
            return None
        request = queue.popleft()
        if not queue:
            del self._waiting[slot]
        return request

    @property
    def outstanding(self) -> tuple[Message, ...]:
        """Requests not answered yet (at the end of an exchange: answers the upstream never sent)."""
        return tuple(request for queue in self._waiting.values() for request in queue)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())


def error_code(direction: str, dialect: Dialect = Dialect.JSONRPC, *, malformed: bool = False) -> int:
    """The JSON-RPC code for a refusal: -32600 for a malformed envelope, -32602 for params that break the request
    schema, and for an answer that breaks its schema -32603 (A2A: -32006 ``InvalidAgentResponseError``)."""
    if malformed:
        return INVALID_REQUEST
    if direction == "request":
        return INVALID_PARAMS
    return A2A_INVALID_AGENT_RESPONSE if dialect is Dialect.A2A else INTERNAL_ERROR


def error_data(problem: Mapping[str, Any], dialect: Dialect) -> Any:
    """What goes in ``error.data`` so the caller's SDK hands the problem document to its user.

    MCP and plain JSON-RPC: the problem document itself (the mcp client exposes ``MCPError.data`` as is).
    A2A 1.0 (spec §9.5) requires ``data`` to be an array of ProtoJSON ``Any`` objects, each with ``@type``; the
    a2a client exposes the ``metadata`` of the ``google.rpc.ErrorInfo`` entry as ``A2AError.data``. So the
    problem document is that metadata (the a2a server itself puts structured values there), followed by a
    ``google.rpc.BadRequest`` listing each violation as a field violation (pointer → description).
    """
    if dialect is not Dialect.A2A:
        return dict(problem)
    kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
    details: list[dict[str, Any]] = [
        {
            "@type": ERROR_INFO_TYPE,
            "reason": kind.upper().replace("-", "_") or "CONTRACT_VIOLATION",
            "domain": GATEWAY_DOMAIN,
            "metadata": dict(problem),
        }
    ]
    violations = problem.get("violations")
    if isinstance(violations, Sequence) and violations:
        details.append(
            {
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [
                    {"field": str(v.get("pointer", "")), "description": str(v.get("message", ""))}
                    for v in violations
                    if isinstance(v, Mapping)
                ],
            }
        )
    return details


def error_response(request_id: JsonRpcId, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC 2.0 error response object."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def refusal(
    envelope: Envelope, problem: Mapping[str, Any], code: int, dialect: Dialect = Dialect.JSONRPC
) -> dict[str, Any] | list[dict[str, Any]] | None:
    """The JSON-RPC answer refusing a whole exchange: one error per request, with that request's ``id``.

    A single request gets one error object; a batch gets an array (JSON-RPC §6: no entries for notifications).
    ``None`` when nothing in the envelope expects an answer (notifications only): JSON-RPC forbids answering
    those, so the caller answers with the HTTP-level refusal (RFC 9457) instead; see :func:`refusal_status`.
    An ``INVALID`` member gets -32600 whatever ``code`` is.
    """
    message = str(problem.get("detail") or problem.get("title") or "Refused by the gateway")
    data = error_data(problem, dialect)
    answers = [
        error_response(m.id, INVALID_REQUEST if m.kind is Kind.INVALID else code, message, data)
        for m in envelope.messages
        if m.kind is Kind.REQUEST or m.kind is Kind.INVALID
    ]
    if not answers:
        return None
    return answers if envelope.batch else answers[0]


def refusal_status(envelope: Envelope) -> int | None:
    """The HTTP status to send a :func:`refusal` with; ``None``: no JSON-RPC answer, send the problem document.

    - A2A (spec §9.5, a2a-sdk 1.x server ``JsonRpcDispatcher``): every JSON-RPC error, -32602 included, goes out
      with HTTP **200** and ``application/json``; on any non-2xx status the a2a client raises
      ``A2AClientError("HTTP Error 4xx")`` and the body is lost.
    - MCP streamable HTTP (2025-11-25 transports): a POSTed *request* is answered with ``application/json``
      (or an SSE stream) carrying its JSON-RPC response, an error response included: **200**. (Revision
      2026-07-28 also lets a server send some errors with 400 + a JSON-RPC body, and the mcp 2.x client
      surfaces a JSON-RPC error from a non-2xx ``application/json`` body, but not from
      ``application/problem+json``.) A refused *notification* (or response) "MUST" get an HTTP error status,
      e.g. 400, body optional: that is the RFC 9457 problem response (``None`` here).
    """
    if any(m.kind in (Kind.REQUEST, Kind.INVALID) for m in envelope.messages):
        return 200
    return None
