"""Endpoints for versioned documents — contracts and policies share one implementation.

For a collection ``/things``: ``PUT /things/{id}`` registers version N+1 (JSON or YAML body; ``?activate=false``
stages it), ``POST /things`` registers ``{things: [...]}`` all or none (``?dry_run=true`` checks the batch the
same way and answers, per document, ``created``/``new_version``/``unchanged`` with its JSON-pointer changes
against the version in force, storing nothing: what a push from Git would change, reviewed before it is made),
``GET /things`` lists ids, ``GET /things/{id}`` shows the active version, ``DELETE /things/{id}`` takes it out
of force (history stays), ``GET /things/{id}/versions[/{n}]`` reads history, ``POST /things/{id}/activate
{version}`` rolls forward or back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from gateway.admin.api import REF, Endpoint, SchemaDoc, json_response, parse_body, rewrite_refs
from gateway.admin.common import VERSION_SCHEMA, bool_query, conflict, int_param, json_problem, not_found, state_of
from gateway.admin.models import (
    ActivateRequest,
    DocumentSummary,
    DocumentVersion,
    DocumentVersionList,
    Registered,
    RegisteredList,
)
from gateway.contracts.document import ContractDocumentError, load_document_text
from gateway.control.jsondiff import json_changes
from gateway.control.state import GatewayState
from gateway.control.versioning import DocumentConflict, DocumentNotFound, Planned, VersionedRegistry
from gateway.errors import AdminError

Registry = VersionedRegistry[Any, Any]


class PlannedChange(BaseModel):
    """What registering one document would do: ``created`` (a new id), ``new_version`` (of ``active_version``,
    with ``changes`` against it) or ``unchanged`` (identical to the version in force: no version minted)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    change: Literal["created", "new_version", "unchanged"]
    active_version: int | None = Field(description="the version in force now; null when none is")
    changes: list[dict[str, Any]] = Field(
        description="JSON-pointer changes from the version in force: {op: add|remove|replace, path, old?, value?}"
    )


class DryRun(BaseModel):
    """A dry run's answer: the batch was checked as a registration would be, and nothing was stored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dry_run: Literal[True]
    documents: list[PlannedChange]


def planned_change(planned: Planned, document: Mapping[str, Any]) -> PlannedChange:
    """One document's line of a dry run; a staged registration (``activate=false``) of a document identical to
    the version in force is a ``new_version`` with no changes, as it does mint one."""
    if planned.active is None:
        return PlannedChange(id=planned.id, change="created", active_version=None,
                             changes=json_changes({}, dict(document)))  # fmt: skip
    change: Literal["new_version", "unchanged"] = "new_version" if planned.changed else "unchanged"
    changes = json_changes(dict(planned.active), dict(document))
    return PlannedChange(id=planned.id, change=change, active_version=planned.active_version, changes=changes)


def dry_run_answer(plan: Sequence[Planned], documents: Sequence[Mapping[str, Any]]) -> DryRun:
    lines = [planned_change(planned, document) for planned, document in zip(plan, documents, strict=True)]
    return DryRun(dry_run=True, documents=lines)


def _registration_result() -> SchemaDoc:
    """``POST /things``'s answer: the stored versions (201), or with ``?dry_run=true`` the plan (200)."""
    refs, schemas = models_json_schema(
        [(RegisteredList, "serialization"), (DryRun, "serialization")], ref_template="#/$defs/{model}"
    )
    return SchemaDoc("RegistrationResult", {"oneOf": list(refs.values()), "$defs": schemas["$defs"]})


REGISTRATION_RESULT = _registration_result()


def load_plain_document(raw: bytes) -> dict[str, Any]:
    """The body as a document made of plain JSON values only: YAML can also spell dates, sets, binary,
    non-string keys and 100-digit integers, none of which a store can keep as they were sent."""
    document = load_document_text(raw, source="body")
    found = json_problem(document)
    if found is not None:
        raise ContractDocumentError("the body is not plain JSON data", [{"pointer": found[0], "message": found[1]}])
    return document


def checked_formats_only(schema: Any, formats: frozenset[str]) -> Any:
    """``schema`` without the ``format`` assertions the registering validator does not check (``uri`` needs
    a package that is not installed), so the OpenAPI document promises only what the server enforces."""
    if isinstance(schema, dict):
        return {
            key: checked_formats_only(value, formats)
            for key, value in schema.items()
            if not (key == "format" and isinstance(value, str) and value not in formats)
        }
    if isinstance(schema, list):
        return [checked_formats_only(item, formats) for item in schema]
    return schema


def document_schemas(
    collection: str, noun: str, schema: Mapping[str, Any], formats: frozenset[str]
) -> tuple[SchemaDoc, SchemaDoc]:
    """The OpenAPI bodies of ``PUT /things/{id}`` (one document, ``id`` optional: it defaults to the path's)
    and ``POST /things`` (``{things: [document with id, ...]}``), both built on the shipped meta-schema."""
    schema = checked_formats_only(schema, formats)
    name = f"{noun.capitalize()}Document"
    required = [key for key in schema.get("required", ()) if key != "id"]
    description = f"{schema.get('description', '')} The id defaults to the path's {{id}} and must equal it."
    one = SchemaDoc(name, {**schema, "required": required, "description": description.strip()})
    shared = {key: value for key, value in schema.items() if key != "$defs"}
    with_id = SchemaDoc(f"{name}WithId", rewrite_refs(shared, f"{REF}{name}."), also=(one,))
    bulk = {
        "type": "object",
        "required": [collection],
        "additionalProperties": False,
        "properties": {
            collection: {"type": "array", "items": {"$ref": REF + with_id.name}, "description": "all or none"}
        },
    }
    return one, SchemaDoc(f"{collection.capitalize()}Registration", bulk, also=(with_id,))


def versioned_endpoints(
    collection: str,
    noun: str,
    registry_of: Callable[[GatewayState], Registry],
    schema: Mapping[str, Any],
    formats: frozenset[str],
) -> list[Endpoint]:
    """The endpoints of one collection of versioned documents (``noun`` names one in messages); ``schema`` is
    its meta-schema and ``formats`` the ``format`` values the registering validator checks."""

    def registry(request: web.Request) -> Registry:
        return registry_of(state_of(request))

    def invalid(exc: ContractDocumentError) -> AdminError:
        if isinstance(exc, DocumentConflict):
            return conflict(str(exc), exc.errors)
        return AdminError(400, str(exc), kind=f"invalid-{noun}", title=f"Invalid {noun}", errors=exc.errors)

    async def put(request: web.Request) -> web.Response:
        doc_id, activate = request.match_info["id"], bool_query(request, "activate", True)
        try:
            document = load_plain_document(await request.read())
            if document.setdefault("id", doc_id) != doc_id:
                raise ContractDocumentError(
                    "the id in the body differs from the id in the path",
                    [{"pointer": "/id", "message": f"expected {doc_id!r}, got {document['id']!r}"}],
                )
            stored = await registry(request).register(document, activate=activate)
        except ContractDocumentError as exc:
            raise invalid(exc) from exc
        return json_response(Registered(id=stored.id, version=stored.version, active=activate), 201)

    async def post(request: web.Request) -> web.Response:
        activate = bool_query(request, "activate", True)
        try:
            body = load_plain_document(await request.read())
            documents = body.get(collection)
            if (
                set(body) != {collection}
                or not isinstance(documents, list)
                or not all(isinstance(d, dict) for d in documents)
            ):
                raise ContractDocumentError(f"the body must be {{{collection}: [document, ...]}}", [])
            if bool_query(request, "dry_run", False):
                plan = await registry(request).preview(documents, activate=activate)
                return json_response(dry_run_answer(plan, documents))
            stored = await registry(request).register_many(documents, activate=activate)
        except ContractDocumentError as exc:
            raise invalid(exc) from exc
        registered = [Registered(id=s.id, version=s.version, active=activate) for s in stored]
        return json_response(RegisteredList(registered=registered), 201)

    listing: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{collection.capitalize()}List", **{collection: (list[DocumentSummary], ...)}
    )
    one, bulk = document_schemas(collection, noun, schema, formats)

    async def list_all(request: web.Request) -> web.Response:
        heads = await registry(request).heads()
        summaries = [DocumentSummary(id=h.id, latest_version=h.latest_version, active_version=h.active_version)
                     for h in heads]  # fmt: skip
        return json_response(listing(**{collection: summaries}))

    async def versions_of(request: web.Request) -> list[DocumentVersion]:
        doc_id = request.match_info["id"]
        try:
            stored = await registry(request).versions(doc_id)
        except DocumentNotFound as exc:
            raise not_found(f"{noun.capitalize()} {doc_id!r}") from exc
        active = registry(request).active_version(doc_id)
        return [
            DocumentVersion(id=s.id, version=s.version, active=s.version == active, created_at=s.created_at,
                            document=dict(s.document))
            for s in stored
        ]  # fmt: skip

    async def get_active(request: web.Request) -> web.Response:
        active = [v for v in await versions_of(request) if v.active]
        if not active:
            raise not_found(f"Active {noun} {request.match_info['id']!r}")
        return json_response(active[0])

    async def list_versions(request: web.Request) -> web.Response:
        return json_response(DocumentVersionList(id=request.match_info["id"], versions=await versions_of(request)))

    async def get_version(request: web.Request) -> web.Response:
        wanted = int_param(request, "version")
        for version in await versions_of(request):
            if version.version == wanted:
                return json_response(version)
        raise not_found(f"Version {wanted} of {noun} {request.match_info['id']!r}")

    async def activate(request: web.Request) -> web.Response:
        body = await parse_body(request, ActivateRequest)
        doc_id = request.match_info["id"]
        try:
            await registry(request).activate(doc_id, body.version)
        except DocumentNotFound as exc:
            raise not_found(f"Version {body.version} of {noun} {doc_id!r}") from exc
        except ContractDocumentError as exc:
            raise conflict(str(exc), exc.errors) from exc
        return json_response(Registered(id=doc_id, version=body.version, active=True))

    async def delete(request: web.Request) -> web.Response:
        doc_id = request.match_info["id"]
        try:
            await registry(request).deactivate(doc_id)
        except DocumentNotFound as exc:
            raise not_found(f"{noun.capitalize()} {doc_id!r}") from exc
        except ContractDocumentError as exc:
            raise conflict(str(exc), exc.errors) from exc
        return web.Response(status=204)

    base = f"/{collection}"
    ident = {"id": schema["properties"]["id"]}
    versioned = {**ident, "version": VERSION_SCHEMA}
    activate_query = {"activate": {"type": "boolean", "default": True, "description": "false stages the version"}}
    dry_run_query = {
        "dry_run": {"type": "boolean", "default": False, "description": "check and show what would change (200), "
                    "store nothing"}
    }  # fmt: skip
    yaml_too = ("application/json", "application/yaml")
    return [
        Endpoint("GET", base, f"List {collection}", list_all, response=listing),
        Endpoint("POST", base, f"Register several {collection} atomically ({{{collection}: [...]}}); "
                 "?dry_run=true answers what would change (200) and stores nothing", post,
                 body=bulk, response=REGISTRATION_RESULT, status=201, also=frozenset({200}),
                 also_description="Dry run (?dry_run=true): what would change, nothing stored",
                 query={**activate_query, **dry_run_query}, errors=frozenset({409}), body_types=yaml_too),
        Endpoint("PUT", base + "/{id}", f"Register a new {noun} version (JSON or YAML; ?activate=false stages)",
                 put, body=one, response=Registered, status=201, params=ident, query=activate_query,
                 errors=frozenset({409}), body_types=yaml_too),
        Endpoint("GET", base + "/{id}", f"Show the active {noun} version", get_active, response=DocumentVersion,
                 params=ident),
        Endpoint("DELETE", base + "/{id}", "Take out of force (versions stay readable)", delete, status=204,
                 params=ident, errors=frozenset({409})),
        Endpoint("GET", base + "/{id}/versions", "List versions", list_versions, response=DocumentVersionList,
                 params=ident),
        Endpoint("GET", base + "/{id}/versions/{version}", "Show one version", get_version,
                 response=DocumentVersion, params=versioned),
        Endpoint("POST", base + "/{id}/activate", "Activate (or roll back to) a version", activate,
                 body=ActivateRequest, response=Registered, params=ident, errors=frozenset({409})),
    ]  # fmt: skip
