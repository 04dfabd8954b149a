"""The admin API's plumbing: typed bodies in and out, problem documents, and the OpenAPI 3.1 document.

Each endpoint is declared once as an :class:`Endpoint`; the same declaration registers the aiohttp route and
describes it in ``/openapi.json``, so the document cannot drift from what is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from gateway.contracts.document import json_pointer
from gateway.errors import PROBLEM_CONTENT_TYPE, AdminError, GatewayError, problem_response

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    body: type[BaseModel] | Mapping[str, Any] | None = None
    """A pydantic model, or a raw JSON Schema for bodies checked elsewhere (contract documents)."""
    response: type[BaseModel] | None = None
    status: int = 200
    public: bool = False


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


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn gateway errors and aiohttp's own HTTP errors (404, 405, 413) into problem documents."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return problem_response(exc, None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = exc.reason.lower().replace(" ", "-")
        return problem_response(AdminError(exc.status, exc.text or exc.reason, kind=kind, title=exc.reason), None)


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def openapi_document(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 description of ``endpoints`` (schemas are JSON Schema 2020-12, as 3.1 allows)."""
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    problem = {
        "description": "Problem (RFC 9457)",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"type": "object"}}},
    }
    for ep in endpoints:
        operation: dict[str, Any] = {"summary": ep.summary, "responses": {}}
        params = [seg[1:-1] for seg in ep.path.split("/") if seg.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        if isinstance(ep.body, type):
            operation["requestBody"] = {"required": True, **_json(_ref(ep.body, components))}
        elif ep.body is not None:
            operation["requestBody"] = {"required": True, **_json(ep.body)}
        ok = {"description": "OK", **(_json(_ref(ep.response, components)) if ep.response else {})}
        operation["responses"][str(ep.status)] = ok
        operation["responses"]["default"] = problem
        if ep.public:
            operation["security"] = []
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
