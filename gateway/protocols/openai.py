"""OpenAI chat completions: the assistant's content, streamed or not, and the JSON it carries inside a string.

Structured output puts the JSON the caller asked for in a *string*: ``choices[i].message.content`` (or, streamed,
the concatenation of every chunk's ``choices[i].delta.content``). A JSON Schema cannot reach into a string
(``contentMediaType``/``contentSchema`` are annotations in 2020-12), so the check is done here, in two steps:

1. the string must parse as JSON, else one violation at the string's own pointer, keyword
   ``contentMediaType`` (it does not hold ``application/json``);
2. the parsed document is checked against the schema (the one the caller sent in
   ``response_format.json_schema.schema``, or a contract's); each violation's pointer is the string's pointer
   followed by the pointer inside the parsed document: ``/choices/0/message/content`` + ``/steps/1`` reads
   ``/choices/0/message/content/steps/1``. (A pointer continues into the JSON a string carries; RFC 6901 cannot
   resolve it in the outer document, the ``keyword`` and message say which schema failed.)

A streamed answer is checked when its choice is complete (the chunk whose ``finish_reason`` is set, or the
``[DONE]`` sentinel): a prefix of a JSON document is not checkable. The pointer then is
``/choices/{i}/delta/content`` (the content is the concatenation of those members across chunks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.errors import Violation
from gateway.jsonpointer import join

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
JSON_MEDIA_KEYWORD = "contentMediaType"


class SchemaCheck(Protocol):
    """What checks a parsed document: ``gateway.contracts.validation.CompiledSchema`` fits (violations listed,
    at most ``limit``, and their total)."""

    def check(self, instance: Any, limit: int) -> tuple[tuple[Violation, ...], int]: ...


@dataclass(frozen=True, slots=True)
class Content:
    """One choice's assistant text and where it lives (``None`` text: no content, e.g. a tool call)."""

    index: int
    pointer: str
    text: str | None


@dataclass(frozen=True, slots=True)
class RequestedSchema:
    """``response_format: {type: json_schema, json_schema: {name, schema, strict}}`` of a request."""

    name: str
    schema: Any
    strict: bool


def requested_schema(request: Any) -> RequestedSchema | None:
    """The schema a chat completions request asks the model to follow, if it asks for one.

    Also reads the Responses API spelling (``text.format: {type: json_schema, name, schema, strict}``).
    """
    if not isinstance(request, Mapping):
        return None
    response_format = request.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
    else:
        text = request.get("text")
        spec = text.get("format") if isinstance(text, Mapping) else None
        if not (isinstance(spec, Mapping) and spec.get("type") == "json_schema"):
            return None
    if not isinstance(spec, Mapping) or "schema" not in spec:
        return None
    return RequestedSchema(str(spec.get("name", "")), spec["schema"], spec.get("strict") is True)


def _choices(document: Any) -> list[Mapping[str, Any]]:
    choices = document.get("choices") if isinstance(document, Mapping) else None
    return [c for c in choices if isinstance(c, Mapping)] if isinstance(choices, list) else []


def _index(choice: Mapping[str, Any], position: int) -> int:
    index = choice.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def message_contents(document: Any) -> list[Content]:
    """Each choice's ``message.content`` of a (non-streamed) chat completion, with its pointer; for a Responses
    API answer (``output``), each ``output_text`` part of its messages (``/output/<i>/content/<j>/text``)."""
    if isinstance(document, Mapping) and isinstance(document.get("output"), list):
        return _output_texts(document["output"])
    found: list[Content] = []
    for position, choice in enumerate(_choices(document)):
        message = choice.get("message")
        text = message.get("content") if isinstance(message, Mapping) else None
        pointer = join(["choices", position, "message", "content"])
        found.append(Content(_index(choice, position), pointer, text if isinstance(text, str) else None))
    return found


def _output_texts(output: list[Any]) -> list[Content]:
    found: list[Content] = []
    for i, item in enumerate(output):
        if not (isinstance(item, Mapping) and item.get("type") == "message" and isinstance(item.get("content"), list)):
            continue
        for j, part in enumerate(item["content"]):
            if isinstance(part, Mapping) and part.get("type") == "output_text":
                text = part.get("text")
                pointer = join(["output", i, "content", j, "text"])
                found.append(Content(len(found), pointer, text if isinstance(text, str) else None))
    return found


@dataclass
class DeltaAccumulator:
    """The content of a streamed chat completion, per choice index, as its chunks pass.

    :meth:`feed` takes one parsed chunk and returns the indices that chunk completed (``finish_reason`` set):
    those are ready for :func:`check_json_text`. At ``[DONE]``, :meth:`unfinished` lists any choice whose
    finish never came.
    """

    parts: dict[int, list[str]] = field(default_factory=dict)
    finish_reasons: dict[int, str] = field(default_factory=dict)

    def feed(self, chunk: Any) -> list[int]:
        finished: list[int] = []
        for position, choice in enumerate(_choices(chunk)):
            index = _index(choice, position)
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, Mapping) else None
            parts = self.parts.setdefault(index, [])
            if isinstance(text, str):
                parts.append(text)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and index not in self.finish_reasons:
                self.finish_reasons[index] = reason
                finished.append(index)
        return finished

    def content(self, index: int) -> Content:
        """Everything streamed so far for choice ``index``."""
        parts = self.parts.get(index)
        return Content(index, join(["choices", index, "delta", "content"]), None if parts is None else "".join(parts))

    def unfinished(self) -> list[int]:
        return sorted(set(self.parts) - set(self.finish_reasons))


def check_json_text(content: Content, schema: SchemaCheck | None, limit: int) -> tuple[tuple[Violation, ...], int]:
    """Check that ``content.text`` is JSON (and, with ``schema``, that the document it holds is valid).

    Returns the violations (at most ``limit``) and their total, pointers as described in the module docstring.
    Missing content (``None``) is a violation too: structured output was asked for and none came.
    """
    if content.text is None:
        return (Violation(content.pointer, JSON_MEDIA_KEYWORD, "no content where JSON was expected"),), 1
    try:
        document = orjson.loads(content.text)
    except orjson.JSONDecodeError as error:
        return (Violation(content.pointer, JSON_MEDIA_KEYWORD, f"content is not valid JSON: {error}"),), 1
    if schema is None:
        return (), 0
    violations, total = schema.check(document, limit)
    return tuple(v.under(content.pointer) for v in violations), total


def stream_error(problem: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` of the error event ending a refused stream, as the openai client reads it.

    The client raises ``APIError(message=error.message, body=error)`` for a streamed JSON object with an
    ``error`` member (``openai/_streaming.py``), so the problem document rides inside ``error``.
    """
    kind = str(problem.get("type", "")).rsplit("/", 1)[-1] or "contract_violation"
    message = str(problem.get("detail") or problem.get("title") or "Refused by the gateway")
    return {"error": {"message": message, "type": "gateway_error", "code": kind, "param": None, "problem": problem}}
