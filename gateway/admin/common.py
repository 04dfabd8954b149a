"""Helpers every admin handler module uses."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import AdminError
from gateway.state import STATE, GatewayState


def state_of(request: web.Request) -> GatewayState:
    return request.app[STATE]


def not_found(what: str) -> AdminError:
    return AdminError(404, f"{what} not found.", kind="not-found", title="Not found")


def conflict(detail: str, errors: list[dict[str, str]] | None = None) -> AdminError:
    return AdminError(409, detail, kind="conflict", title="Conflict", errors=errors or [])


def int_query(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError as exc:
        raise AdminError(400, f"query parameter {name!r} must be an integer") from exc
    if value <= 0:
        raise AdminError(400, f"query parameter {name!r} must be positive")
    return value


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError as exc:
        raise AdminError(400, f"{name} must be an integer") from exc
