"""The admin application: health, routes, and the assembly of every endpoint module into one app."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from gateway import __version__
from gateway.admin import console, contracts, events, fuzz, policies, resilience, runs
from gateway.admin.api import (
    Endpoint,
    json_response,
    neutral_server_header,
    openapi_document,
    parse_body,
    problem_middleware,
)
from gateway.admin.auth import token_auth_middleware
from gateway.admin.common import conflict, not_found, state_of
from gateway.admin.models import Health, Liveness, RouteBody, RouteList
from gateway.config import RouteSpec
from gateway.contracts.document import json_pointer
from gateway.control.state import STATE, GatewayState
from gateway.errors import AdminError

# -- health ----------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """Liveness only: the event loop answers. No counts here — a probe that restarts the process must not
    depend on the tables, and counts that are not read from them would lie (they are in ``/readyz``)."""
    return json_response(Liveness(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    state = state_of(request)
    health = Health(
        status="ok" if state.ready else "starting",
        routes=sum(1 for _ in state.routes.table),
        contracts=len(state.contracts.table),
    )
    return json_response(health, 200 if state.ready else 503)


# -- routes ----------------------------------------------------------------------------------------------


async def list_routes(request: web.Request) -> web.Response:
    routes = [r.model_dump(mode="json") for r in state_of(request).routes.table]
    return json_response(RouteList(routes=routes))


async def put_route(request: web.Request) -> web.Response:
    body = await parse_body(request, RouteBody)
    try:
        route = RouteSpec.model_validate({**body.model_dump(), "name": request.match_info["name"]})
    except ValidationError as exc:
        errors = [{"pointer": json_pointer(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise AdminError(400, "Invalid route.", errors=errors) from exc
    try:
        await state_of(request).routes.put(route)
    except ValueError as exc:
        raise conflict(str(exc)) from exc
    return web.Response(body=route.model_dump_json(), content_type="application/json")


async def get_route(request: web.Request) -> web.Response:
    route = state_of(request).routes.table.get(request.match_info["name"])
    if route is None:
        raise not_found("Route")
    return web.Response(body=route.model_dump_json(), content_type="application/json")


async def delete_route(request: web.Request) -> web.Response:
    if not await state_of(request).routes.delete(request.match_info["name"]):
        raise not_found("Route")
    return web.Response(status=204)


# -- assembly --------------------------------------------------------------------------------------------

ROUTE_NAME: dict[str, Any] = {"name": RouteSpec.model_json_schema()["properties"]["name"]}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/healthz", "Liveness (no counts: see /readyz)", healthz, response=Liveness, public=True),
    Endpoint(
        "GET",
        "/readyz",
        "Readiness and table sizes (503 until started)",
        readyz,
        response=Health,
        public=True,
        also=frozenset({503}),
    ),
    Endpoint("GET", "/routes", "List routes", list_routes, response=RouteList),
    Endpoint(
        "PUT",
        "/routes/{name}",
        "Create or replace a route",
        put_route,
        body=RouteBody,
        response=RouteSpec,
        params=ROUTE_NAME,
        errors=frozenset({409}),
    ),
    Endpoint("GET", "/routes/{name}", "Show a route", get_route, response=RouteSpec, params=ROUTE_NAME),
    Endpoint("DELETE", "/routes/{name}", "Delete a route", delete_route, status=204, params=ROUTE_NAME),
    *contracts.ENDPOINTS,
    *fuzz.ENDPOINTS,
    *policies.ENDPOINTS,
    *resilience.ENDPOINTS,
    *runs.ENDPOINTS,
)

OPENAPI = openapi_document(ENDPOINTS, title="agent-gateway admin API", version=__version__)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(OPENAPI), content_type="application/json")


def build_admin_app(state: GatewayState, *, token: str | None) -> web.Application:
    """The admin application; ``token=None`` disables auth (callers allow it only on loopback)."""
    public = frozenset(ep.path for ep in ENDPOINTS if ep.public) | {"/openapi.json"} | console.PUBLIC_PATHS
    app = web.Application(
        middlewares=[problem_middleware, token_auth_middleware(token=token, public=public)],
        client_max_size=state.config.limits.max_body_bytes,
    )
    app[STATE] = state
    app.on_response_prepare.append(neutral_server_header)
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, ep.path, ep.handler)
    app.router.add_get("/openapi.json", openapi)
    console.mount(app)
    events.mount(app)
    return app
