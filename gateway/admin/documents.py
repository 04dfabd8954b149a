"""Endpoints for versioned documents — contracts and policies share one implementation.

For a collection ``/things``: ``PUT /things/{id}`` registers version N+1 (JSON or YAML body; ``?activate=false``
stages it), ``POST /things`` registers ``{things: [...]}`` all or none, ``GET /things`` lists ids,
``GET /things/{id}`` shows the active version, ``DELETE /things/{id}`` takes it out of force (history stays),
``GET /things/{id}/versions[/{n}]`` reads history, ``POST /things/{id}/activate {version}`` rolls forward or back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, create_model

from gateway.admin.api import Endpoint, json_response, parse_body
from gateway.admin.common import conflict, int_param, not_found, state_of
from gateway.admin.models import (
    ActivateRequest,
    DocumentSummary,
    DocumentVersion,
    DocumentVersionList,
    Registered,
    RegisteredList,
)
from gateway.contracts.document import ContractDocumentError, load_document_text
from gateway.errors import AdminError
from gateway.state import GatewayState
from gateway.versioning import DocumentNotFound, VersionedRegistry

Registry = VersionedRegistry[Any, Any]


def versioned_endpoints(
    collection: str, noun: str, registry_of: Callable[[GatewayState], Registry], schema: Mapping[str, Any]
) -> list[Endpoint]:
    """The endpoints of one collection of versioned documents (``noun`` names one in messages)."""

    def registry(request: web.Request) -> Registry:
        return registry_of(state_of(request))

    def invalid(exc: ContractDocumentError) -> AdminError:
        return AdminError(400, str(exc), kind=f"invalid-{noun}", title=f"Invalid {noun}", errors=exc.errors)

    def activate_flag(request: web.Request) -> bool:
        return request.query.get("activate", "true").lower() not in ("false", "0", "no")

    async def put(request: web.Request) -> web.Response:
        doc_id, activate = request.match_info["id"], activate_flag(request)
        try:
            document = load_document_text(await request.read(), source="body")
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
        activate = activate_flag(request)
        try:
            body = load_document_text(await request.read(), source="body")
            documents = body.get(collection)
            if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
                raise ContractDocumentError(f"the body must be {{{collection}: [document, ...]}}", [])
            stored = await registry(request).register_many(documents, activate=activate)
        except ContractDocumentError as exc:
            raise invalid(exc) from exc
        registered = [Registered(id=s.id, version=s.version, active=activate) for s in stored]
        return json_response(RegisteredList(registered=registered), 201)

    listing: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{collection.capitalize()}List", **{collection: (list[DocumentSummary], ...)}
    )
    bulk: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{collection.capitalize()}Registration",
        **{collection: (list[dict[str, Any]], Field(description="documents, registered all or none"))},
    )

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
            raise not_found(f"Active {noun} {doc_id!r}") from exc
        except ContractDocumentError as exc:
            raise conflict(str(exc), exc.errors) from exc
        return web.Response(status=204)

    base = f"/{collection}"
    return [
        Endpoint("GET", base, f"List {collection}", list_all, response=listing),
        Endpoint("POST", base, f"Register several {collection} atomically ({{{collection}: [...]}})", post,
                 body=bulk, response=RegisteredList, status=201),
        Endpoint("PUT", base + "/{id}", f"Register a new {noun} version (JSON or YAML; ?activate=false stages)",
                 put, body=schema, response=Registered, status=201),
        Endpoint("GET", base + "/{id}", f"Show the active {noun} version", get_active, response=DocumentVersion),
        Endpoint("DELETE", base + "/{id}", "Take out of force (versions stay readable)", delete, status=204),
        Endpoint("GET", base + "/{id}/versions", "List versions", list_versions, response=DocumentVersionList),
        Endpoint("GET", base + "/{id}/versions/{version}", "Show one version", get_version,
                 response=DocumentVersion),
        Endpoint("POST", base + "/{id}/activate", "Activate (or roll back to) a version", activate,
                 body=ActivateRequest, response=Registered),
    ]  # fmt: skip
