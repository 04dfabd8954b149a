"""Admin endpoints for resilience state: circuit breakers and the escalation dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pydantic import Field

from gateway.admin.api import Endpoint, SchemaDoc, parse_body
from gateway.admin.common import MAX_LIMIT, conflict, enum_query, int_query, not_found, state_of
from gateway.admin.models import JsonValue, _Model
from gateway.control.state import GatewayState
from gateway.control.versioning import DocumentNotFound
from gateway.dataplane.transport import HOP_BY_HOP, upstream_url
from gateway.errors import AdminError
from gateway.policies.breaker import COMMANDS, CircuitBreaker, State
from gateway.policies.checkpoint import Checkpoints, request_digest
from gateway.policies.escalation import EscalationClosed, EscalationNotFound, public_view, redacted_parts
from gateway.policies.outbox import delivery_view
from gateway.redaction import redacted_query_names
from gateway.store.base import EscalationItem


class Resolution(_Model):
    """A person's corrected answer for an escalated handoff; checked against the contract before it is kept."""

    status: int = Field(200, ge=200, le=599)
    body: JsonValue
    note: str | None = None


class Discard(_Model):
    note: str | None = None


STATUSES = frozenset({"pending", "resolved", "replayed", "discarded"})
BREAKER: Mapping[str, Any] = {
    "type": "object",
    "required": ["name", "state", "calls_in_window", "failure_rate", "slow_call_rate", "consecutive_failures",
                 "probes_in_flight"],
    "properties": {"name": {"type": "string"}, "state": {"enum": [s.value for s in State]},
                   "calls_in_window": {"type": "integer"}, "failure_rate": {"type": "number"},
                   "slow_call_rate": {"type": "number"},
                   "consecutive_failures": {"type": "integer"}, "probes_in_flight": {"type": "integer"},
                   "sharing": {"enum": ["sidecar", "fleet"]}, "fleet_view": {"enum": ["shared", "local", None]}},
}  # fmt: skip
ESCALATION: Mapping[str, Any] = {
    "type": "object",
    "required": ["id", "status", "reason", "route", "method", "path", "outcome_url"],
    "properties": {"id": {"type": "string"}, "status": {"enum": sorted(STATUSES)}, "outcome_url": {"type": "string"}},
}


# -- breakers --------------------------------------------------------------------------------------------


def _breaker(request: web.Request) -> CircuitBreaker:
    breaker = state_of(request).breakers.find(request.match_info["name"])
    if breaker is None:
        raise not_found(f"Breaker {request.match_info['name']!r}")
    return breaker


async def list_breakers(request: web.Request) -> web.Response:
    snapshots = [b.snapshot() for b in state_of(request).breakers.all()]
    return web.Response(body=orjson.dumps({"breakers": snapshots}), content_type="application/json")


async def get_breaker(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(_breaker(request).snapshot()), content_type="application/json")


async def command_breaker(request: web.Request) -> web.Response:
    """``force-open`` → ``forced_open`` (fail fast until reset), ``force-close`` → ``forced_closed`` (let
    everything through, record nothing), ``reset`` → ``closed`` (a fresh window)."""
    breaker = _breaker(request)
    command = request.match_info["command"]
    if command not in COMMANDS:
        raise AdminError(400, f"command must be one of {', '.join(COMMANDS)}")
    breaker.command(command)
    return web.Response(body=orjson.dumps(breaker.snapshot()), content_type="application/json")


# -- dead-letter queue -----------------------------------------------------------------------------------


def _view(item: EscalationItem) -> web.Response:
    return web.Response(body=orjson.dumps(public_view(item)), content_type="application/json")


async def _pending(state: GatewayState, item_id: str) -> EscalationItem:
    try:
        return await state.escalations.pending(item_id)
    except EscalationNotFound as exc:
        raise not_found(f"Escalation {item_id!r}") from exc
    except EscalationClosed as exc:
        raise conflict(str(exc)) from exc


async def list_dlq(request: web.Request) -> web.Response:
    state = state_of(request)
    items = await state.store.list_escalations(
        status=enum_query(request, "status", STATUSES),
        route=request.query.get("route"),
        limit=int_query(request, "limit", 100, MAX_LIMIT),
    )
    return web.Response(body=orjson.dumps({"escalations": [public_view(i) for i in items]}),
                        content_type="application/json")  # fmt: skip


async def get_dlq(request: web.Request) -> web.Response:
    """The item, with its webhook's delivery (``webhook``: status, attempts, last error) when it has one."""
    state = state_of(request)
    try:
        item = await state.escalations.get(request.match_info["id"])
    except EscalationNotFound as exc:
        raise not_found(f"Escalation {request.match_info['id']!r}") from exc
    view = public_view(item)
    delivery = await state.store.webhook_delivery(item.id)
    view["webhook"] = None if delivery is None else delivery_view(delivery)
    return web.Response(body=orjson.dumps(view), content_type="application/json")


async def _check_answer(state: GatewayState, item: EscalationItem, status: int, body: bytes) -> None:
    """Refuse an answer that breaks the contract version the handoff was made under (422, every violation)."""
    if item.contract is None or item.contract_version is None:
        return
    try:
        contract = await state.contracts.compiled(item.contract, item.contract_version)
    except DocumentNotFound as exc:
        raise conflict(f"contract {item.contract} v{item.contract_version} is gone") from exc
    verdict = contract.check_answer(status, body, "application/json", state.config.limits.max_violations)
    if verdict is not None and verdict[1]:
        raise AdminError(
            422, f"The answer violates contract {contract.id!r} version {contract.version}; nothing was changed.",
            kind="response_invalid", title="Answer violates contract", errors=[v.as_dict() for v in verdict[0]],
        )  # fmt: skip


async def _accept(state: GatewayState, item: EscalationItem, status: str, answer: tuple[int, bytes],
                  note: str | None) -> EscalationItem:  # fmt: skip
    """Close the item with its answer and store that answer as the original request's checkpoint."""
    closed = await state.escalations.close_item(item, status, response=answer, note=note)
    if item.checkpoint_key is not None:
        policy = state.policies.table.lookup(item.route, item.contract)
        await Checkpoints(state.store).complete(
            item.checkpoint_key, item.request_digest or request_digest(item.request_body), answer[0],
            {"Content-Type": "application/json"}, answer[1], policy.checkpoint,
        )  # fmt: skip
    return closed


async def resolve_dlq(request: web.Request) -> web.Response:
    state = state_of(request)
    resolution = await parse_body(request, Resolution)
    item = await _pending(state, request.match_info["id"])
    answer = (resolution.status, orjson.dumps(resolution.body))
    await _check_answer(state, item, *answer)
    return _view(await _accept(state, item, "resolved", answer, resolution.note))


def _refuse_redacted(item: EscalationItem) -> None:
    """A request stored with redacted parts is not the request that failed: resending it without a credential
    or with "[redacted]" in a field would make its answer the checkpoint of a request never sent. 409, naming
    what is missing; the person resolves the item with a corrected answer instead."""
    redacted = redacted_parts(item)
    missing = [{"header": name} for name in redacted["request_headers"]]
    missing += [{"query": name} for name in redacted_query_names(item.query)]
    missing += [{"pointer": pointer} for pointer in redacted["request"]]
    if missing:
        names = ", ".join(
            m.get("header") or (f"query {m['query']}" if "query" in m else f"body {m['pointer'] or '/'}")
            for m in missing
        )
        raise AdminError(
            409, f"The stored request was redacted ({names}) and cannot be resent; resolve the item instead.",
            kind="replay-redacted", title="Redacted request cannot be replayed", errors=missing,
        )  # fmt: skip


async def replay_dlq(request: web.Request) -> web.Response:
    """Send the stored request to the upstream again; keep its answer only if the contract accepts it."""
    state = state_of(request)
    item = await _pending(state, request.match_info["id"])
    _refuse_redacted(item)
    route = state.routes.table.get(item.route)
    session = state.escalations.session
    if route is None or session is None:
        raise conflict(f"route {item.route!r} is gone")
    headers = {k: v for k, v in item.request_headers.items()
               if k.lower() not in HOP_BY_HOP | {"host", "content-length"}}  # fmt: skip
    url = upstream_url(route.upstream, item.path, item.query)
    try:
        async with session.request(item.method, url, headers=headers, data=item.request_body) as resp:
            answer = (resp.status, await resp.read())
    except (TimeoutError, aiohttp.ClientError) as exc:
        detail = f"the upstream of route {item.route!r} could not be reached ({exc!r}); the item stays pending"
        raise AdminError(502, detail, kind="upstream_error", title="Upstream agent failed") from exc
    if not 200 <= answer[0] < 300:
        raise conflict(f"the upstream answered {answer[0]} again; the item stays pending")
    await _check_answer(state, item, *answer)
    return _view(await _accept(state, item, "replayed", answer, None))


async def discard_dlq(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, Discard)
    item = await _pending(state, request.match_info["id"])
    return _view(await state.escalations.close_item(item, "discarded", note=body.note))


BREAKER_DOC = SchemaDoc("Breaker", BREAKER)
ESCALATION_DOC = SchemaDoc("Escalation", ESCALATION)
BREAKERS = SchemaDoc(
    "BreakerList",
    {"type": "object", "required": ["breakers"], "properties": {"breakers": {"type": "array", "items": BREAKER}}},
)
ESCALATIONS = SchemaDoc(
    "EscalationList",
    {
        "type": "object",
        "required": ["escalations"],
        "properties": {"escalations": {"type": "array", "items": ESCALATION}},
    },
)
DLQ_QUERY: Mapping[str, Mapping[str, Any]] = {
    "status": {"enum": sorted(STATUSES)},
    "route": {"type": "string"},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
}
COMMAND = {"command": {"enum": list(COMMANDS)}}

ENDPOINTS = (
    Endpoint("GET", "/breakers", "Circuit breakers and their state", list_breakers, response=BREAKERS),
    Endpoint("GET", "/breakers/{name}", "One circuit breaker", get_breaker, response=BREAKER_DOC),
    Endpoint("POST", "/breakers/{name}/{command}",
             "force-open (state forced_open), force-close (state forced_closed) or reset (state closed) a breaker",
             command_breaker, response=BREAKER_DOC, params=COMMAND),
    Endpoint("GET", "/dlq", "Escalated handoffs, newest first", list_dlq, response=ESCALATIONS, query=DLQ_QUERY),
    Endpoint("GET", "/dlq/{id}", "One escalated handoff with everything needed to judge it", get_dlq,
             response=ESCALATION_DOC),
    Endpoint("POST", "/dlq/{id}/resolve", "Answer with a corrected response (checked against the contract)",
             resolve_dlq, body=Resolution, response=ESCALATION_DOC, errors=frozenset({409, 422})),
    Endpoint("POST", "/dlq/{id}/replay", "Send the stored request to the upstream again", replay_dlq,
             response=ESCALATION_DOC, errors=frozenset({409, 422, 502})),
    Endpoint("POST", "/dlq/{id}/discard", "Give up on the item", discard_dlq, body=Discard,
             response=ESCALATION_DOC, errors=frozenset({409})),
)  # fmt: skip
