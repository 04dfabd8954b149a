"""Recovery: what the caller gets when a handoff failed for good — escalate, fall back, or reject.

- ``escalate``: the handoff goes to the dead-letter queue with everything a person needs (redacted by the
  gateway's one :class:`~gateway.redaction.Redactor`), the webhook is notified, and the caller gets the policy's
  answer: ``503`` problem or ``202`` — both carrying the ``escalation_id`` and the ``outcome_url`` to poll
  (``/.well-known/agent-gateway/escalations/{id}``). When the store cannot take the item the caller gets
  ``503`` ``escalation-unavailable`` with ``Retry-After`` instead: nothing was kept, so it must retry (a ``202``
  or an escalation id would promise a person will look at something that does not exist).
- ``fallback``: the policy's static answer or alternative route — and that answer is checked against the
  contract like any other: an invalid fallback is refused (502), never passed on.
- ``reject``: the upstream's own answer when there was one (a listed 5xx), else the problem document.

Every contract refusal that leaves through here, recovered or not, is shown as the redactor allows
(:meth:`~gateway.redaction.Redactor.refusal`): its violation messages never quote a value at an ``audit.redact``
pointer, a credential header or a credential query parameter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.config import Limits
from gateway.control.routes import RouteRegistry
from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import Failure
from gateway.dataplane.transport import read_limited
from gateway.dataplane.upstream import Upstream
from gateway.errors import (
    AdminError,
    ContractViolation,
    Escalated,
    FallbackInvalid,
    GatewayError,
    StoreUnavailable,
    problem_response,
)
from gateway.headers import ESCALATION_ID, ESCALATION_STATUS, RETRY_AFTER
from gateway.observability.observe import ESCALATION_FAILED_NOTE
from gateway.policies.checkpoint import request_digest
from gateway.policies.document import Fallback
from gateway.policies.escalation import (
    OUTCOME_PATH,
    EscalationNotFound,
    EscalationNotStored,
    Escalations,
    new_item_id,
)
from gateway.redaction import Redactor, redacted_query
from gateway.store.base import EscalationItem

log = logging.getLogger("agent_gateway.escalation")

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
        return {RETRY_AFTER: str(ESCALATION_RETRY_AFTER)}

    def extensions(self) -> dict[str, Any]:
        return {"reason": self.reason}


class Recover:
    """Catches the :class:`Failure` raised below (a refused request, or attempts that ended in failure)."""

    def __init__(
        self, escalations: Escalations, routes: RouteRegistry, upstream: Upstream, redactor: Redactor, limits: Limits
    ) -> None:
        self._escalations = escalations
        self._routes = routes
        self._upstream = upstream
        self._redactor = redactor
        self._max_violations = limits.max_violations
        self._max_body_bytes = limits.max_body_bytes
        self._offload_bytes = limits.offload_bytes

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        try:
            return await call_next(exchange)
        except Failure as failure:
            return await self._recover(exchange, failure)
        except ContractViolation as refused:
            raise self._redactor.refusal(refused) from refused

    async def _recover(self, exchange: Exchange, failure: Failure) -> web.StreamResponse:
        fallback = exchange.policy.fallback
        if failure.action == "escalate":
            return await self._escalate(exchange, failure)
        if failure.action == "fallback" and fallback is not None:
            return await self._fallback(exchange, failure, fallback)
        if failure.response is not None:
            return failure.response.to_web()
        raise self._redactor.refusal(failure.error) from failure.error

    async def _escalate(self, exchange: Exchange, failure: Failure) -> web.StreamResponse:
        escalation = exchange.policy.escalation
        item = await self._item(exchange, failure)
        try:
            await self._escalations.escalate(item, escalation.webhook)
        except EscalationNotStored as exc:
            log.error(
                "could not escalate a failed handoff (%s); the caller is told to retry", failure.condition.value,
                exc_info=exc, extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id},
            )  # fmt: skip
            exchange.notes.append(ESCALATION_FAILED_NOTE)
            raise EscalationUnavailable(failure.condition.value) from failure.error
        exchange.notes.append(f"escalation={item.id}")
        outcome = OUTCOME_PATH + item.id
        if escalation.respond_status == 503:
            raise Escalated(item.id, failure.condition.value, outcome) from failure.error
        exchange.status = 202
        document = {
            "escalation_id": item.id, "status": "pending", "reason": failure.condition.value, "outcome_url": outcome
        }  # fmt: skip
        return web.json_response(document, status=202, headers={"Location": outcome})

    async def _item(self, exchange: Exchange, failure: Failure) -> EscalationItem:
        """The DLQ item, redacted: credential headers and query parameters, and the configured pointers in both
        bodies and in the violation messages. Large bodies are parsed and redacted in a worker thread, off the
        event loop."""
        assert exchange.route is not None
        request, contract, redactor = exchange.request, exchange.contract, self._redactor
        request_body, upstream_body = await _redact_bodies(
            redactor, exchange.request_body, exchange.response_body, self._offload_bytes
        )
        return EscalationItem(
            id=new_item_id(), created_at=time.time(), status="pending", reason=failure.condition.value,
            route=exchange.route.name, method=request.method, path=exchange.path, query=redacted_query(exchange.query),
            request_headers=redactor.header_values(request.headers),
            request_body=request_body, trace_id=exchange.trace_id, run_id=exchange.run_id, attempts=failure.attempts,
            contract=contract.id if contract else None, contract_version=contract.version if contract else None,
            upstream_status=failure.response.status if failure.response else (exchange.status or None),
            upstream_body=upstream_body, violations=redactor.violations(exchange.violations),
            checkpoint_key=exchange.checkpoint_key,
            request_digest=request_digest(exchange.request_body) if exchange.checkpoint_key else None,
        )  # fmt: skip

    async def _fallback(self, exchange: Exchange, failure: Failure, fallback: Fallback) -> web.StreamResponse:
        if fallback.route is not None:
            route = self._routes.table.get(fallback.route)
            if route is None:
                raise failure.error
            async with self._upstream.call(exchange, route, exchange.request_body, None) as answer:
                status, content_type = answer.status, answer.content_type
                body = await read_limited(answer, self._max_body_bytes)
            origin = f"route:{route.name}"
        else:
            status, body, content_type = fallback.status, orjson.dumps(fallback.body), "application/json"
            origin = "static"
        self._check_fallback(exchange, status, body, content_type)
        exchange.status = status
        exchange.fallback = origin
        exchange.notes.append(f"fallback={origin}")
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    def _check_fallback(self, exchange: Exchange, status: int, answer: bytes, content_type: str) -> None:
        contract = exchange.contract
        verdict = contract.check_answer(status, answer, content_type, self._max_violations) if contract else None
        if contract is not None and verdict is not None and verdict[1]:
            violations, total = verdict
            raise self._redactor.refusal(FallbackInvalid(
                contract=contract.id, version=contract.version, direction="response", violations=violations,
                total=total,
            ))  # fmt: skip


def escalation_outcome(escalations: Escalations) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /.well-known/agent-gateway/escalations/{id}`` on the data plane: where a caller whose handoff was
    escalated polls for the person's answer (202 while pending, the answer once resolved, 410 if discarded)."""

    async def outcome(request: web.Request) -> web.Response:
        try:
            item = await escalations.get(request.match_info["id"])
        except StoreUnavailable as exc:
            return problem_response(exc, None)
        except EscalationNotFound:
            missing = AdminError(
                404, f"No escalation {request.match_info['id']!r}.", kind="not-found", title="Not found"
            )
            return problem_response(missing, None)
        if item.status in ("resolved", "replayed") and item.resolution_status is not None:
            return web.Response(
                body=item.resolution_body, status=item.resolution_status, content_type="application/json",
                headers={ESCALATION_STATUS: item.status, ESCALATION_ID: item.id},
            )  # fmt: skip
        view = {"id": item.id, "status": item.status, "reason": item.reason, "created_at": item.created_at}
        return web.json_response(view, status=410 if item.status == "discarded" else 202)

    return outcome


async def _redact_bodies(
    redactor: Redactor, request: bytes | None, upstream: bytes | None, offload_bytes: int
) -> tuple[bytes | None, bytes | None]:
    """Both bodies as the DLQ may keep them; in a worker thread once either reaches ``offload_bytes``."""

    def both() -> tuple[bytes | None, bytes | None]:
        return redactor.body(request).body, redactor.body(upstream).body

    if max(len(request or b""), len(upstream or b"")) >= offload_bytes:
        return await asyncio.to_thread(both)
    return both()
