"""The front of the chain: observe every handoff, and answer every refusal in one shape.

- :class:`Observe` opens the exchange (trace context joined, run id, source agent, SERVER span) and, whatever
  happens below, reports it once: audit record, metrics, log line (``gateway/observability/observe.py``).
- :class:`Respond` is the one place a :class:`GatewayError` becomes a problem document (and an unexpected
  exception a logged 500-free problem): nothing below it builds an error answer.
- :func:`stamp` is the one place the handoff's own headers (``X-Run-Id``, ``X-Contract-Verdict``,
  ``X-Checkpoint``, ``X-Fallback``) are written, as aiohttp prepares any answer — buffered or streamed, so a
  streamed answer carries them too. Every answer says its verdict, ``unchecked`` where no contract applies.
"""

from __future__ import annotations

import logging
import random

from aiohttp import web
from opentelemetry import baggage
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Tracer

from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange
from gateway.errors import ContractViolation, GatewayError, problem_response
from gateway.headers import AGENT, ATTEMPTS, CHECKPOINT, FALLBACK, RUN, VERDICT
from gateway.observability.observe import Observer
from gateway.observability.spans import begin_server_span, end_server_span
from gateway.observability.telemetry import RUN_BAGGAGE, ServerSpans, trace_id_of
from gateway.outcomes import Verdict
from gateway.protocols import jsonrpc

log = logging.getLogger("agent_gateway.proxy")

EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("agent_gateway_exchange", Exchange)
REFUSAL: web.RequestKey[str] = web.RequestKey("agent_gateway_refusal", str)
"""The problem type (its slug) of a refusal: the SERVER span's ``error.type`` (``spans.end_server_span``)."""


class Observe:
    def __init__(self, tracer: Tracer, propagator: TextMapPropagator, observer: Observer) -> None:
        self._spans = ServerSpans(tracer)
        self._propagator = propagator
        self._observer = observer

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        self._begin(exchange)
        failure: BaseException | None = None
        try:
            return await call_next(exchange)
        except BaseException as exc:  # only what broke an answer already under way gets this far (see Respond)
            failure = exc
            raise
        finally:
            self._observer.finish(exchange)
            span = exchange.span
            end_server_span(
                span, exchange.status, (exchange.verdict or Verdict.UNCHECKED).value, exchange.violation_count,
                exchange.request.get(REFUSAL), failure,
            )  # fmt: skip
            span.end()

    def _begin(self, exchange: Exchange) -> None:
        request = exchange.request
        headers = request.headers
        parent = self._propagator.extract(headers)
        run_id = headers.get(RUN) or baggage.get_baggage(RUN_BAGGAGE, parent)
        exchange.run_id = str(run_id) if run_id else f"{random.getrandbits(64):016x}"  # an id, not a secret
        exchange.source = headers.get(AGENT, "unknown")
        span = exchange.span = self._spans.start(request.method, parent)
        exchange.trace_id = trace_id_of(span)
        begin_server_span(span, request, exchange.run_id, exchange.source)
        request[EXCHANGE] = exchange


class Respond:
    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        try:
            return await call_next(exchange)
        except GatewayError as exc:
            if exchange.committed:
                raise  # the status line is gone: aiohttp can only cut the connection, which tells the caller
            return refuse(exchange, exc)
        except Exception as exc:
            if exchange.committed:
                raise
            log.exception("unexpected failure", extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id})
            exchange.request[REFUSAL] = type(exc).__qualname__  # error.type names what failed, not "internal-error"
            return refuse(exchange, GatewayError("The gateway failed unexpectedly; see its logs."))


def refuse(exchange: Exchange, error: GatewayError) -> web.Response:
    """The problem document for ``error``; its verdict, when it reports an outcome, becomes the exchange's. A
    JSON-RPC caller gets it as the ``data`` of a JSON-RPC error with its call's ``id`` (HTTP 200, as MCP and A2A
    clients expect: on another status their SDKs drop the body), so the violations reach the SDK's user."""
    exchange.status = error.status_code()
    if error.verdict is not None:
        exchange.verdict = error.verdict
    exchange.request.setdefault(REFUSAL, error.kind)
    envelope = exchange.rpc
    rpc_status = jsonrpc.refusal_status(envelope) if envelope is not None else None
    if envelope is None or rpc_status is None:
        return problem_response(error, exchange.trace_id)
    dialect = exchange.rpc_dialect
    if isinstance(error, ContractViolation):
        code = jsonrpc.error_code(error.direction, dialect)
    else:
        code = jsonrpc.INTERNAL_ERROR
    body = jsonrpc.refusal(envelope, error.problem(exchange.trace_id), code, dialect)
    exchange.status = rpc_status
    return web.json_response(body, status=rpc_status, headers=error.headers())


async def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the handoff's headers on every answer of the data plane."""
    exchange = request.get(EXCHANGE)
    if exchange is None:
        return  # not a proxied request (the escalation outcome endpoint)
    headers = response.headers
    headers[RUN] = exchange.run_id
    headers[ATTEMPTS] = str(len(exchange.failed_attempts) + (1 if exchange.upstream_started else 0))
    if exchange.checkpoint is not None:
        headers[CHECKPOINT] = exchange.checkpoint
    if exchange.fallback is not None:
        headers[FALLBACK] = exchange.fallback
    contract = exchange.contract
    parts = [(exchange.verdict or Verdict.UNCHECKED).value]
    if contract is not None:
        parts += (f"contract={contract.id}", f"version={contract.version}")
    parts += exchange.notes
    if exchange.attempt > 1:
        parts.append(f"attempts={exchange.attempt}")
    headers[VERDICT] = "; ".join(parts)
