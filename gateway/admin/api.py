"""The admin API's plumbing: typed bodies in and out, problem documents, and the OpenAPI 3.1 document.

Each endpoint is declared once as an :class:`Endpoint`; the same declaration registers the aiohttp route and
describes it in ``/openapi.json`` — its parameters with their bounds, its body, and every status it can answer —
so the document cannot drift from what is served (``tests/test_admin_schemathesis.py`` holds it to that).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.contracts.document import json_pointer
from gateway.errors import PROBLEM_CONTENT_TYPE, AdminError, GatewayError, problem_response

M = TypeVar("M", bound=BaseModel)

REF = "#/components/schemas/"
PROBLEM_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "trace_id": {"type": ["string", "null"]},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
REASONS = {
    400: "Malformed request (body, parameter or query out of range)",
    401: "Missing or wrong bearer token",
    404: "No such resource",
    409: "Conflicts with the current state",
    413: "Body larger than limits.max_body_bytes",
    422: "The answer violates the contract",
    502: "The upstream could not be reached",
}


@dataclass(frozen=True, slots=True)
class SchemaDoc:
    """A hand-written JSON Schema published as component ``name`` (its ``$defs`` become components too)."""

    name: str
    schema: Mapping[str, Any]
    also: tuple[SchemaDoc, ...] = ()
    """Schemas ``schema`` refers to by name, published with it."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    body: type[BaseModel] | SchemaDoc | None = None
    response: type[BaseModel] | SchemaDoc | None = None
    status: int = 200
    public: bool = False
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Schemas of path parameters by name; a parameter not listed is any non-empty string."""
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    also: frozenset[int] = frozenset()
    """Statuses answered with the same body as ``status`` (``/readyz``'s 503)."""
    also_description: str = "Not ready"
    """What the ``also`` statuses mean, in the OpenAPI document."""
    errors: frozenset[int] = frozenset()
    """Error statuses beyond the implied ones (401 unless public, 400 for any input, 404 for path parameters)."""
    media_type: str = "application/json"
    body_types: tuple[str, ...] = ("application/json",)

    def error_statuses(self) -> list[int]:
        implied = {401} if not self.public else set()
        if self.body is not None:
            implied |= {400, 413}
        if self.query or self.params:
            implied.add(400)
        if "{" in self.path:
            implied.add(404)
        return sorted(implied | self.errors)


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(model.model_dump(mode="json")), status=status, content_type="application/json"
    )


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request body as ``model``; a malformed one is a 400 problem listing each error's pointer."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = [{"pointer": json_pointer(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise AdminError(400, f"Invalid {model.__name__} body.", errors=errors) from exc


# Headers aiohttp's HTTP errors carry about their own text/plain body; the problem document brings its own.
_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn gateway errors and aiohttp's own HTTP errors (404, 405, 413) into problem documents.

    The headers an HTTP error carries stay (``Allow`` on a 405 is required by RFC 9110 §15.5.6).
    """
    try:
        return await handler(request)
    except GatewayError as exc:
        return problem_response(exc, None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = exc.reason.lower().replace(" ", "-")
        kept = {name: value for name, value in exc.headers.items() if name not in _BODY_HEADERS}
        error = AdminError(exc.status, exc.text or exc.reason, kind=kind, title=exc.reason)
        return problem_response(error, None, kept)


async def neutral_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: name the product, not the Python and aiohttp versions behind it."""
    response.headers[hdrs.SERVER] = "agent-gateway"


class _Components:
    """Collects the schemas an OpenAPI document refers to, under ``#/components/schemas``."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = []
        for ep in endpoints:
            if isinstance(ep.body, type):
                pairs.append((ep.body, "validation"))
            if isinstance(ep.response, type):
                pairs.append((ep.response, "serialization"))
        refs, definitions = models_json_schema(pairs, ref_template=REF + "{model}")
        self.model_refs = refs
        self.schemas: dict[str, Any] = {**definitions.get("$defs", {}), "Problem": dict(PROBLEM_SCHEMA)}

    def ref(self, schema: type[BaseModel] | SchemaDoc, mode: JsonSchemaMode) -> dict[str, Any]:
        if isinstance(schema, SchemaDoc):
            return self.add(schema)
        return dict(self.model_refs[(schema, mode)])

    def add(self, doc: SchemaDoc) -> dict[str, Any]:
        """Publish ``doc`` with its ``$defs`` hoisted next to it (``Name.def``) and its ``$ref``s rewritten."""
        if doc.name not in self.schemas:
            local = {key: value for key, value in doc.schema.items() if key not in ("$schema", "$id", "$defs")}
            prefix = f"{REF}{doc.name}."
            self.schemas[doc.name] = rewrite_refs(local, prefix)
            for name, definition in doc.schema.get("$defs", {}).items():
                self.schemas[f"{doc.name}.{name}"] = rewrite_refs(definition, prefix)
            for other in doc.also:
                self.add(other)
        return {"$ref": REF + doc.name}


def rewrite_refs(schema: Any, prefix: str) -> Any:
    """``schema`` with every document-local ``#/$defs/x`` reference pointing at component ``prefix + x``."""
    if isinstance(schema, dict):
        return {
            key: prefix + value.removeprefix("#/$defs/")
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
            else rewrite_refs(value, prefix)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [rewrite_refs(item, prefix) for item in schema]
    return schema


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    names = [segment[1:-1] for segment in ep.path.split("/") if segment.startswith("{")]
    path = [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": dict(ep.params.get(n, {"type": "string", "minLength": 1})),
        }
        for n in names
    ]
    return path + [{"name": n, "in": "query", "required": False, "schema": dict(s)} for n, s in ep.query.items()]


def _body_required(body: type[BaseModel] | SchemaDoc) -> bool:
    """A model whose every field has a default may be sent without a body (:func:`parse_body` reads ``{}``)."""
    return not isinstance(body, type) or any(f.is_required() for f in body.model_fields.values())


def _operation(ep: Endpoint, components: _Components) -> dict[str, Any]:
    def content(schema: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
        return {"content": {media_type: {"schema": schema}}}

    problem = content({"$ref": REF + "Problem"}, PROBLEM_CONTENT_TYPE)
    ok: dict[str, Any] = {"description": "OK"}
    if ep.response is not None:
        ok |= content(components.ref(ep.response, "serialization"), ep.media_type)
    elif ep.status != 204:
        ok |= content({"type": "string"} if ep.media_type.startswith("text/") else {}, ep.media_type)
    operation: dict[str, Any] = {"summary": ep.summary, "responses": {str(ep.status): ok}}
    operation["responses"] |= {str(status): {**ok, "description": ep.also_description} for status in sorted(ep.also)}
    for status in ep.error_statuses():
        operation["responses"][str(status)] = {"description": REASONS.get(status, "Problem"), **problem}
    if parameters := _parameters(ep):
        operation["parameters"] = parameters
    if ep.body is not None:
        schema = components.ref(ep.body, "validation")
        content_types = {t: {"schema": schema} for t in ep.body_types}
        operation["requestBody"] = {"required": _body_required(ep.body), "content": content_types}
    if ep.public:
        operation["security"] = []
    return operation


def openapi_document(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 description of ``endpoints`` (schemas are JSON Schema 2020-12, as 3.1 allows)."""
    components = _Components(endpoints)
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
