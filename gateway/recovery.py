"""What the proxy answers when the attempts are over and failed: escalate, fall back, or reject.

- ``escalate``: the handoff goes to the dead-letter queue with everything a person needs (redacted by the
  gateway's one :class:`~gateway.redaction.Redactor`), the webhook is notified, and the caller gets the policy's
  answer: ``503`` problem or ``202`` — both carrying the ``escalation_id`` and the ``outcome_url`` to poll
  (``/.well-known/agent-gateway/escalations/{id}``). When the store cannot take the item the caller gets
  ``503`` ``escalation-unavailable`` with ``Retry-After`` instead: nothing was kept, so it must retry (a ``202``
  or an escalation id would promise a person will look at something that does not exist).
- ``fallback``: the policy's static answer or alternative route — and that answer is checked against the
  contract like any other: an invalid fallback is refused (502), never passed on.
- ``reject``: the upstream's own answer when there was one (a listed 5xx), else the problem document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.attempts import Failure
from gateway.errors import AdminError, Escalated, FallbackInvalid, GatewayError, problem_response
from gateway.exchange import Exchange
from gateway.observe import ESCALATION_FAILED_NOTE
from gateway.policies.document import PolicySpec
from gateway.policies.escalation import (
    OUTCOME_PATH,
    EscalationNotFound,
    EscalationNotStored,
    Escalations,
    new_item_id,
)
from gateway.redaction import Redactor, redactor_for
from gateway.routes import RouteRegistry
from gateway.state import STATE
from gateway.store.base import EscalationItem
from gateway.verdicts import mark

if TYPE_CHECKING:
    from gateway.proxy import Proxy

log = logging.getLogger("agent_gateway.escalation")

FALLBACK_HEADER = "X-Fallback"
ESCALATION_RETRY_AFTER = 5


class EscalationUnavailable(GatewayError):
    """The handoff failed and should have been escalated, but the dead-letter queue could not be written."""

    status = 503
    kind = "escalation-unavailable"
    title = "Escalation could not be stored"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The handoff failed ({reason}) and could not be escalated: the dead-letter queue is unavailable. "
            "Nothing was kept; retry the request."
        )
        self.reason = reason

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(ESCALATION_RETRY_AFTER)}

    def extensions(self) -> dict[str, Any]:
        return {"reason": self.reason}


class Recovery:
    def __init__(self, escalations: Escalations, routes: RouteRegistry, max_violations: int) -> None:
        self.escalations = escalations
        self._routes = routes
        self._max_violations = max_violations

    async def recover(
        self, proxy: Proxy, exchange: Exchange, failure: Failure, policy: PolicySpec, body: bytes | None,
        key: str | None,
    ) -> web.StreamResponse:  # fmt: skip
        if failure.action == "escalate":
            return await self._escalate(proxy, exchange, failure, policy, body, key)
        if failure.action == "fallback" and policy.fallback is not None:
            return await self._fallback(proxy, exchange, failure, policy, body)
        if failure.response is not None:
            mark(exchange, failure.response.headers)
            return failure.response.to_web()
        raise failure.error

    async def _escalate(
        self, proxy: Proxy, exchange: Exchange, failure: Failure, policy: PolicySpec, body: bytes | None,
        key: str | None,
    ) -> web.StreamResponse:  # fmt: skip
        item = await self._item(exchange, failure, body, key)
        try:
            await self.escalations.escalate(item, policy.escalation.webhook)
        except EscalationNotStored as exc:
            log.error(
                "could not escalate a failed handoff (%s); the caller is told to retry", failure.condition,
                exc_info=exc, extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id},
            )  # fmt: skip
            exchange.notes.append(ESCALATION_FAILED_NOTE)
            raise EscalationUnavailable(failure.condition) from failure.error
        exchange.notes.append(f"escalation={item.id}")
        outcome = OUTCOME_PATH + item.id
        if policy.escalation.respond_status == 503:
            raise Escalated(item.id, failure.condition, outcome) from failure.error
        exchange.status = 202
        headers = {"Location": outcome}
        mark(exchange, headers)
        document = {"escalation_id": item.id, "status": "pending", "reason": failure.condition, "outcome_url": outcome}
        return web.json_response(document, status=202, headers=headers)

    async def _item(self, exchange: Exchange, failure: Failure, body: bytes | None, key: str | None) -> EscalationItem:
        """The DLQ item, redacted: credential headers, and the configured pointers in both bodies and in the
        violation messages. Large bodies are parsed and redacted in a worker thread, off the event loop."""
        assert exchange.route is not None
        request, contract = exchange.request, exchange.contract
        config = request.app[STATE].config
        redactor = redactor_for(config.audit)
        request_body, upstream_body = await _redact_bodies(
            redactor, body, exchange.response_body, config.limits.offload_bytes
        )
        return EscalationItem(
            id=new_item_id(), created_at=time.time(), status="pending", reason=failure.condition,
            route=exchange.route.name, method=request.method, path=exchange.path, query=exchange.query,
            request_headers=redactor.header_values(request.headers),
            request_body=request_body, trace_id=exchange.trace_id, run_id=exchange.run_id, attempts=failure.attempts,
            contract=contract.id if contract else None, contract_version=contract.version if contract else None,
            upstream_status=failure.response.status if failure.response else (exchange.status or None),
            upstream_body=upstream_body, violations=redactor.violations(exchange.violations), checkpoint_key=key,
        )  # fmt: skip

    async def _fallback(
        self, proxy: Proxy, exchange: Exchange, failure: Failure, policy: PolicySpec, body: bytes | None
    ) -> web.StreamResponse:
        fallback = policy.fallback
        assert fallback is not None
        if fallback.route is not None:
            route = self._routes.table.get(fallback.route)
            if route is None:
                raise failure.error
            async with proxy.send(exchange, route, body) as upstream:
                status, answer = upstream.status, await upstream.read()
                content_type = upstream.content_type
            origin = f"route:{route.name}"
        else:
            status, answer, content_type = fallback.status, orjson.dumps(fallback.body), "application/json"
            origin = "static"
        self._check_fallback(exchange, status, answer, content_type)
        exchange.status = status
        exchange.notes.append(f"fallback={origin}")
        headers = CIMultiDict({"Content-Type": content_type, FALLBACK_HEADER: origin})
        mark(exchange, headers)
        return web.Response(body=answer, status=status, headers=headers)

    def _check_fallback(self, exchange: Exchange, status: int, answer: bytes, content_type: str) -> None:
        contract = exchange.contract
        verdict = contract.check_answer(status, answer, content_type, self._max_violations) if contract else None
        if contract is not None and verdict is not None and verdict[1]:
            violations, total = verdict
            raise FallbackInvalid(
                contract=contract.id, version=contract.version, direction="response", violations=violations,
                total=total,
            )  # fmt: skip

    async def outcome(self, request: web.Request) -> web.Response:
        """``GET /.well-known/agent-gateway/escalations/{id}`` on the data plane: the caller polls here."""
        try:
            item = await self.escalations.get(request.match_info["id"])
        except EscalationNotFound:
            missing = AdminError(
                404, f"No escalation {request.match_info['id']!r}.", kind="not-found", title="Not found"
            )
            return problem_response(missing, None)
        if item.status in ("resolved", "replayed") and item.resolution_status is not None:
            return web.Response(
                body=item.resolution_body, status=item.resolution_status, content_type="application/json",
                headers={"X-Escalation-Status": item.status, "X-Escalation-Id": item.id},
            )  # fmt: skip
        view = {"id": item.id, "status": item.status, "reason": item.reason, "created_at": item.created_at}
        return web.json_response(view, status=410 if item.status == "discarded" else 202)


async def _redact_bodies(
    redactor: Redactor, request: bytes | None, upstream: bytes | None, offload_bytes: int
) -> tuple[bytes | None, bytes | None]:
    """Both bodies as the DLQ may keep them; in a worker thread once either reaches ``offload_bytes``."""

    def both() -> tuple[bytes | None, bytes | None]:
        return redactor.body(request).body, redactor.body(upstream).body

    if max(len(request or b""), len(upstream or b"")) >= offload_bytes:
        return await asyncio.to_thread(both)
    return both()
