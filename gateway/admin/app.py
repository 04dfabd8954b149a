"""Admin API handlers: routes, versioned contracts, dry-run validation, health and the OpenAPI document."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from gateway import __version__
from gateway.admin.api import Endpoint, json_response, openapi_document, parse_body, problem_middleware
from gateway.admin.auth import token_auth_middleware
from gateway.admin.models import (
    ActivateRequest,
    BulkRegistration,
    ContractList,
    ContractSummary,
    ContractVersion,
    ContractVersionList,
    FailureBucket,
    FailureStats,
    HandoffOut,
    Health,
    Registered,
    RegisteredList,
    RouteList,
    RunList,
    RunOut,
    RunTimelineOut,
    ValidateRequest,
    ValidateResult,
    ViolationOut,
)
from gateway.audit import timeline
from gateway.config import RouteSpec
from gateway.contracts.document import (
    ContractDocumentError,
    contract_meta_schema,
    json_pointer,
    load_document_text,
)
from gateway.contracts.registry import ContractNotFound
from gateway.contracts.validation import NO_VIOLATIONS, CompiledContract, Verdict
from gateway.errors import AdminError
from gateway.state import STATE, GatewayState
from gateway.store.base import HandoffRecord, RunSummary


def _state(request: web.Request) -> GatewayState:
    return request.app[STATE]


def _not_found(what: str) -> AdminError:
    return AdminError(404, f"{what} not found.", kind="not-found", title="Not found")


def _version_param(request: web.Request) -> int:
    try:
        return int(request.match_info["version"])
    except ValueError as exc:
        raise AdminError(400, "version must be an integer") from exc


# -- health ----------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    state = _state(request)
    health = Health(
        status="ok" if state.ready else "starting",
        routes=sum(1 for _ in state.routes.table),
        contracts=len(state.contracts.table),
    )
    return json_response(health, 200 if state.ready else 503)


# -- routes ----------------------------------------------------------------------------------------------


async def list_routes(request: web.Request) -> web.Response:
    routes = [r.model_dump(mode="json") for r in _state(request).routes.table]
    return json_response(RouteList(routes=routes))


async def put_route(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    raw = await request.read()
    try:
        route = RouteSpec.model_validate({**orjson.loads(raw or b"{}"), "name": name})
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise AdminError(400, f"The body is not a JSON object: {exc}") from exc
    except ValidationError as exc:
        errors = [{"pointer": json_pointer(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise AdminError(400, "Invalid route.", errors=errors) from exc
    try:
        await _state(request).routes.put(route)
    except ValueError as exc:
        raise AdminError(409, str(exc), kind="conflict", title="Conflict") from exc
    return web.Response(body=route.model_dump_json(), content_type="application/json")


async def get_route(request: web.Request) -> web.Response:
    route = _state(request).routes.table.get(request.match_info["name"])
    if route is None:
        raise _not_found("Route")
    return web.Response(body=route.model_dump_json(), content_type="application/json")


async def delete_route(request: web.Request) -> web.Response:
    if not await _state(request).routes.delete(request.match_info["name"]):
        raise _not_found("Route")
    return web.Response(status=204)


# -- contracts -------------------------------------------------------------------------------------------


def _activate_flag(request: web.Request) -> bool:
    return request.query.get("activate", "true").lower() not in ("false", "0", "no")


def _invalid_contract(exc: ContractDocumentError) -> AdminError:
    return AdminError(400, str(exc), kind="invalid-contract", title="Invalid contract", errors=exc.errors)


async def put_contract(request: web.Request) -> web.Response:
    """Register the body (JSON or YAML) as the next version of the contract; activate it unless told not to."""
    contract_id = request.match_info["id"]
    activate = _activate_flag(request)
    try:
        document = load_document_text(await request.read(), source="body")
        if document.setdefault("id", contract_id) != contract_id:
            raise ContractDocumentError(
                "the id in the body differs from the id in the path",
                [{"pointer": "/id", "message": f"expected {contract_id!r}, got {document['id']!r}"}],
            )
        stored = await _state(request).contracts.register(document, activate=activate)
    except ContractDocumentError as exc:
        raise _invalid_contract(exc) from exc
    return json_response(Registered(id=stored.id, version=stored.version, active=activate), 201)


async def post_contracts(request: web.Request) -> web.Response:
    """Register several contracts as one atomic change (for contracts that ``$ref`` each other)."""
    activate = _activate_flag(request)
    try:
        body = load_document_text(await request.read(), source="body")
        documents = body.get("contracts")
        if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
            raise ContractDocumentError("the body must be {contracts: [document, ...]}", [])
        stored = await _state(request).contracts.register_many(documents, activate=activate)
    except ContractDocumentError as exc:
        raise _invalid_contract(exc) from exc
    registered = [Registered(id=s.id, version=s.version, active=activate) for s in stored]
    return json_response(RegisteredList(registered=registered), 201)


async def list_contracts(request: web.Request) -> web.Response:
    heads = await _state(request).contracts.heads()
    summaries = [
        ContractSummary(id=h.id, latest_version=h.latest_version, active_version=h.active_version) for h in heads
    ]
    return json_response(ContractList(contracts=summaries))


async def _versions(request: web.Request) -> list[ContractVersion]:
    state = _state(request)
    contract_id = request.match_info["id"]
    try:
        stored = await state.contracts.versions(contract_id)
    except ContractNotFound as exc:
        raise _not_found(f"Contract {contract_id!r}") from exc
    active = state.contracts.table.get(contract_id)
    active_version = active.version if active is not None else None
    return [
        ContractVersion(
            id=s.id, version=s.version, active=s.version == active_version, created_at=s.created_at,
            document=dict(s.document),
        )
        for s in stored
    ]  # fmt: skip


async def get_contract(request: web.Request) -> web.Response:
    """The active version; a deleted contract is 404 here but its versions stay readable."""
    active = [v for v in await _versions(request) if v.active]
    if not active:
        raise _not_found(f"Active contract {request.match_info['id']!r}")
    return json_response(active[0])


async def list_versions(request: web.Request) -> web.Response:
    return json_response(ContractVersionList(id=request.match_info["id"], versions=await _versions(request)))


async def get_version(request: web.Request) -> web.Response:
    wanted = _version_param(request)
    for version in await _versions(request):
        if version.version == wanted:
            return json_response(version)
    raise _not_found(f"Version {wanted} of contract {request.match_info['id']!r}")


async def activate_contract(request: web.Request) -> web.Response:
    body = await parse_body(request, ActivateRequest)
    contract_id = request.match_info["id"]
    try:
        await _state(request).contracts.activate(contract_id, body.version)
    except ContractNotFound as exc:
        raise _not_found(f"Version {body.version} of contract {contract_id!r}") from exc
    except ContractDocumentError as exc:
        raise AdminError(409, str(exc), kind="conflict", title="Conflict", errors=exc.errors) from exc
    return json_response(Registered(id=contract_id, version=body.version, active=True))


async def delete_contract(request: web.Request) -> web.Response:
    contract_id = request.match_info["id"]
    try:
        await _state(request).contracts.deactivate(contract_id)
    except ContractNotFound as exc:
        raise _not_found(f"Active contract {contract_id!r}") from exc
    except ContractDocumentError as exc:
        raise AdminError(409, str(exc), kind="conflict", title="Conflict", errors=exc.errors) from exc
    return web.Response(status=204)


async def validate_payload(request: web.Request) -> web.Response:
    """Dry-run a payload through the same validators the data plane uses; returns the verdict."""
    body = await parse_body(request, ValidateRequest)
    contract_id = request.match_info["id"]
    try:
        contract = await _state(request).contracts.compiled(contract_id, body.version)
    except ContractNotFound as exc:
        raise _not_found(f"Contract {contract_id!r}" + (f" version {body.version}" if body.version else "")) from exc
    limit = _state(request).config.limits.max_violations
    checked, (violations, total) = dry_run(contract, body, limit)
    return json_response(
        ValidateResult(
            contract=contract.id, version=contract.version, direction=body.direction, valid=total == 0,
            checked=checked, violations=[ViolationOut(**v.as_dict()) for v in violations], violation_count=total,
        )
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DryRunRequest:
    """A dry-run payload seen as a request (satisfies :class:`gateway.contracts.validation.RequestView`)."""

    content_type: str
    headers: CIMultiDictProxy[str]
    query: MultiDict[str]


def dry_run(contract: CompiledContract, body: ValidateRequest, limit: int) -> tuple[bool, Verdict]:
    """``(checked, (violations, total))``; ``checked`` is false when no schema covers the response status."""
    payload = None if body.payload is None else orjson.dumps(body.payload)
    if body.direction == "request":
        view = DryRunRequest(body.content_type, CIMultiDictProxy(CIMultiDict(body.headers)), MultiDict(body.query))
        return True, contract.check_request(view, payload, limit)[1]
    schema = contract.response_schema(body.status)
    if schema is None:
        return False, NO_VIOLATIONS
    return True, contract.check_response(schema, payload or b"", body.content_type, None, limit)[1]


# -- runs, failures, metrics -----------------------------------------------------------------------------


def _handoff_out(record: HandoffRecord) -> HandoffOut:
    fields = {name: getattr(record, name) for name in HandoffRecord.__slots__}
    fields["violations"] = [dict(v) for v in record.violations]
    return HandoffOut(**fields)


async def list_runs(request: web.Request) -> web.Response:
    state = _state(request)
    await state.audit.flush()
    limit = _int_query(request, "limit", 50)
    runs = await state.store.list_runs(limit)
    return json_response(RunList(runs=[RunOut(**{n: getattr(r, n) for n in RunSummary.__slots__}) for r in runs]))


async def get_run(request: web.Request) -> web.Response:
    state = _state(request)
    await state.audit.flush()
    run_id = request.match_info["id"]
    records = await state.store.run_handoffs(run_id)
    if not records:
        raise _not_found(f"Run {run_id!r}")
    story = timeline(run_id, records)
    return json_response(
        RunTimelineOut(
            run_id=run_id,
            handoffs=[_handoff_out(r) for r in story.handoffs],
            entry_point=_handoff_out(story.entry_point) if story.entry_point else None,
            downstream=[r.id for r in story.downstream],
        )
    )


async def failure_stats(request: web.Request) -> web.Response:
    state = _state(request)
    await state.audit.flush()
    window = float(_int_query(request, "window", 3600))
    counts = await state.store.failure_counts(time.time() - window)
    by_category: dict[str, int] = {}
    for c in counts:
        by_category[c.category] = by_category.get(c.category, 0) + c.count
    buckets = [FailureBucket(route=c.route, category=c.category, mode=c.mode, count=c.count) for c in counts]
    stats = FailureStats(
        window_seconds=window, total=sum(by_category.values()), by_category=by_category, failures=buckets
    )
    return json_response(stats)


async def metrics(request: web.Request) -> web.Response:
    body = _state(request).metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _int_query(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError as exc:
        raise AdminError(400, f"query parameter {name!r} must be an integer") from exc
    if value <= 0:
        raise AdminError(400, f"query parameter {name!r} must be positive")
    return value


# -- assembly --------------------------------------------------------------------------------------------

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/healthz", "Liveness", healthz, response=Health, public=True),
    Endpoint("GET", "/readyz", "Readiness (503 until started)", readyz, response=Health, public=True),
    Endpoint("GET", "/routes", "List routes", list_routes, response=RouteList),
    Endpoint("PUT", "/routes/{name}", "Create or replace a route", put_route, body=RouteSpec),
    Endpoint("GET", "/routes/{name}", "Show a route", get_route),
    Endpoint("DELETE", "/routes/{name}", "Delete a route", delete_route, status=204),
    Endpoint("GET", "/contracts", "List contracts", list_contracts, response=ContractList),
    Endpoint(
        "POST",
        "/contracts",
        "Register several contracts atomically ({contracts: [...]}, JSON or YAML)",
        post_contracts,
        body=BulkRegistration,
        response=RegisteredList,
        status=201,
    ),
    Endpoint(
        "PUT",
        "/contracts/{id}",
        "Register a new version (JSON or YAML; ?activate=false to stage)",
        put_contract,
        body=contract_meta_schema(),
        response=Registered,
        status=201,
    ),
    Endpoint("GET", "/contracts/{id}", "Show the active version", get_contract, response=ContractVersion),
    Endpoint("DELETE", "/contracts/{id}", "Stop enforcing (versions stay readable)", delete_contract, status=204),
    Endpoint("GET", "/contracts/{id}/versions", "List versions", list_versions, response=ContractVersionList),
    Endpoint("GET", "/contracts/{id}/versions/{version}", "Show one version", get_version, response=ContractVersion),
    Endpoint(
        "POST",
        "/contracts/{id}/activate",
        "Activate (or roll back to) a version",
        activate_contract,
        body=ActivateRequest,
        response=Registered,
    ),
    Endpoint(
        "POST",
        "/contracts/{id}/validate",
        "Dry-run a payload against a contract",
        validate_payload,
        body=ValidateRequest,
        response=ValidateResult,
    ),
    Endpoint("GET", "/runs", "Recent runs (?limit=50)", list_runs, response=RunList),
    Endpoint("GET", "/runs/{id}", "A run's timeline and where a violation entered", get_run, response=RunTimelineOut),
    Endpoint(
        "GET",
        "/stats/failures",
        "Failures by route and MAST category (?window=3600 s)",
        failure_stats,
        response=FailureStats,
    ),
    Endpoint("GET", "/metrics", "Prometheus metrics (text exposition format)", metrics),
)

OPENAPI = openapi_document(ENDPOINTS, title="agent-gateway admin API", version=__version__)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(OPENAPI), content_type="application/json")


def build_admin_app(state: GatewayState, *, token: str | None) -> web.Application:
    """The admin application; ``token=None`` disables auth (callers allow it only on loopback)."""
    public = frozenset(ep.path for ep in ENDPOINTS if ep.public) | {"/openapi.json"}
    app = web.Application(
        middlewares=[problem_middleware, token_auth_middleware(token=token, public=public)],
        client_max_size=state.config.limits.max_body_bytes,
    )
    app[STATE] = state
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, ep.path, ep.handler)
    app.router.add_get("/openapi.json", openapi)
    return app
