"""Contract documents: reading them, checking them against the shipped JSON Schema, and their typed form.

Registration is the one place where a contract can be wrong, so every problem is found here and reported
with a JSON pointer into the document: the data plane only ever sees contracts that compiled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from jsonschema.validators import Draft202012Validator

from gateway.outcomes import CONDITIONS, Verdict, condition

Action = Literal["reject", "pass", "retry", "escalate", "fallback"]
Mode = Literal["enforce", "shadow"]
DEFAULT_ACTIONS: Mapping[Verdict, Action] = dict.fromkeys(CONDITIONS, "reject")


def failure_modes(declared: Mapping[str, Action]) -> dict[Verdict, Action]:
    """A document's ``failure_modes`` keyed by condition (a legacy spelling such as ``timeout`` accepted)."""
    return {condition(name): action for name, action in declared.items()}


class ContractDocumentError(ValueError):
    """The document is not a valid contract; ``errors`` lists ``{pointer, message}`` for each problem."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


@cache
def contract_meta_schema() -> dict[str, Any]:
    """The JSON Schema every contract document must satisfy (shipped as ``contract.schema.json``)."""
    text = resources.files("gateway.contracts").joinpath("contract.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _document_validator() -> Draft202012Validator:
    return Draft202012Validator(contract_meta_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def json_pointer(parts: Any) -> str:
    """RFC 6901 pointer for a sequence of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    idempotent: bool = False


@dataclass(frozen=True, slots=True)
class RpcOperation:
    """A JSON-RPC method (and, for MCP ``tools/call``, a tool) called on the operation's method and path."""

    method: str
    tool: str | None = None
    params: Any | None = None
    result: Any | None = None
    error: Any | None = None

    @property
    def name(self) -> str:
        """How spans, audit steps and metrics name it: ``tools/call add``, ``SendMessage``."""
        return self.method if self.tool is None else f"{self.method} {self.tool}"


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """Where a payload carries the artifact a run builds on: a version (pointer or header) or the artifact
    itself embedded at a pointer, matched by digest against earlier outputs."""

    artifact: str
    version: str | None = None
    header: str | None = None
    embed: str | None = None


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """A checked contract document; ``raw`` is kept verbatim for the admin API and the store."""

    id: str
    route: str
    operation: Operation
    mode: Mode
    request_body: Any | None
    request_headers: Any | None
    request_query: Any | None
    responses: Mapping[str, Any]
    failure_modes: Mapping[Verdict, Action]
    """Declared actions merged over the defaults; ``declared`` says which the document set explicitly."""
    declared: frozenset[Verdict]
    shared_schemas: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = field(repr=False)
    produces: ArtifactRef | None = None
    consumes: ArtifactRef | None = None
    rpc: RpcOperation | None = None
    events: Mapping[str, Any] = field(default_factory=dict)
    """Schemas for each ``data:`` event of a ``text/event-stream`` answer, by status."""
    structured_output: Mapping[str, Any] | None = None
    """JSON inside strings (OpenAI structured output): ``{schema?}``; see ``gateway/dataplane/answers.py``."""

    def action(self, failure_mode: Verdict) -> Action:
        """The declared action, or ``pass`` for everything when the contract is in shadow mode."""
        return "pass" if self.mode == "shadow" else self.failure_modes[failure_mode]


def load_document_text(text: str | bytes, *, source: str = "<document>") -> dict[str, Any]:
    """Parse JSON or YAML text into a mapping. JSON is tried first with orjson: PyYAML reads JSON too (YAML is
    a superset) but a thousand times slower, and on the admin API's event loop (a 1.5 MiB contract took 3.5 s);
    whatever orjson refuses (YAML, or JSON beyond 64-bit integers) goes to the YAML parser as before."""
    try:
        loaded = orjson.loads(text)
    except orjson.JSONDecodeError:
        loaded = _load_yaml(text, source)
    if not isinstance(loaded, dict):
        raise ContractDocumentError(f"{source}: a contract document must be a mapping", [])
    return loaded


def _load_yaml(text: str | bytes, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractDocumentError(f"{source}: not valid JSON or YAML: {exc}", []) from exc


def load_document_file(path: Path) -> dict[str, Any]:
    return load_document_text(path.read_text(), source=str(path))


def _schema_locations(doc: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], Any]]:
    request = doc.get("request", {})
    found: list[tuple[tuple[Any, ...], Any]] = [
        (("request", part), request[part]) for part in ("body", "headers", "query") if part in request
    ]
    found += [(("responses", status), schema) for status, schema in doc.get("responses", {}).items()]
    found += [(("events", status), schema) for status, schema in doc.get("events", {}).items()]
    if "schema" in doc.get("structured_output", {}):
        found.append((("structured_output", "schema"), doc["structured_output"]["schema"]))
    rpc = doc.get("jsonrpc", {})
    found += [(("jsonrpc", part), rpc[part]) for part in ("params", "result", "error") if part in rpc]
    found += [(("schemas", i), schema) for i, schema in enumerate(doc.get("schemas", []))]
    return found


def schema_errors(validator: Draft202012Validator, doc: Any) -> list[dict[str, str]]:
    """Every way ``doc`` breaks ``validator``'s schema, as ``{pointer, message}``, in document order."""
    return [
        {"pointer": json_pointer(err.absolute_path), "message": err.message}
        for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    ]


def check_contract(doc: Mapping[str, Any]) -> None:
    """Raise :class:`ContractDocumentError` unless ``doc`` satisfies the contract meta-schema and each embedded
    schema is valid draft 2020-12."""
    errors = schema_errors(_document_validator(), doc)
    if not errors:
        for location, schema in _schema_locations(doc):
            errors += [
                {"pointer": json_pointer(location + tuple(err.absolute_path)), "message": err.message}
                for err in Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(schema)
            ]
    if errors:
        raise ContractDocumentError(f"invalid contract document: {len(errors)} problem(s)", errors)


def parse_contract(doc: Mapping[str, Any], *, checked: bool = False) -> ContractSpec:
    """The typed form of ``doc``, after :func:`check_contract` unless ``checked`` says it passed already (a
    stored version, or content seen before): the check costs milliseconds, making the typed form microseconds.
    A ``checked`` document that is not a contract after all (a store edited by hand) is checked, to say why."""
    if not checked:
        check_contract(doc)
        return _spec(doc)
    try:
        return _spec(doc)
    except (KeyError, TypeError, AttributeError, ValueError):
        check_contract(doc)
        raise


def _spec(doc: Mapping[str, Any]) -> ContractSpec:
    operation = doc["operation"]
    request = doc.get("request", {})
    return ContractSpec(
        id=doc["id"],
        route=doc["route"],
        operation=Operation(operation["method"], operation["path"], operation.get("idempotent", False)),
        mode=doc.get("mode", "enforce"),
        request_body=request.get("body"),
        request_headers=request.get("headers"),
        request_query=request.get("query"),
        responses=dict(doc.get("responses", {})),
        failure_modes={**DEFAULT_ACTIONS, **failure_modes(doc.get("failure_modes", {}))},
        declared=frozenset(failure_modes(doc.get("failure_modes", {}))),
        shared_schemas=tuple(doc.get("schemas", ())),
        raw=doc,
        produces=_artifact(doc, "produces"),
        consumes=_artifact(doc, "consumes"),
        rpc=RpcOperation(**doc["jsonrpc"]) if "jsonrpc" in doc else None,
        events=dict(doc.get("events", {})),
        structured_output=doc.get("structured_output"),
    )


def _artifact(doc: Mapping[str, Any], role: str) -> ArtifactRef | None:
    ref = doc.get("context", {}).get(role)
    return None if ref is None else ArtifactRef(**ref)
