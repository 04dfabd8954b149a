"""The last stage: one call to the agent through the :class:`Upstream`, and its answer back to the caller.

- A listed failure status (``retry.statuses``, default 502/503/504) that the attempts stage will act on is read
  in full and raised as :class:`AttemptFailed` (kept, so a final ``reject`` can still relay it as it was).
- An answer whose status has a schema is read in full (within the body limit), parsed once, checked (in the
  validation pool when large), and relayed as the original bytes when valid; an invalid one is never relayed:
  it becomes ``response_invalid``. What a valid answer produces is recorded for stale-context checks.
- Any other answer streams back chunk by chunk without buffering; once its status line is sent, a failure can
  only cut the connection.
- Event streams (``text/event-stream``) of JSON-RPC calls or of operations with ``events`` schemas are checked
  event by event (``answers.py``); an A2A agent card gets its URLs moved behind the gateway.
Transport failures become ``upstream_timeout`` / ``upstream_error`` attempts.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.config import Limits
from gateway.contracts.context import ContextTracker
from gateway.contracts.validation import CompiledContract, CompiledSchema
from gateway.dataplane.answers import (
    EVENT_STREAM,
    EventCheck,
    answers_checked,
    check_rpc_answer,
    check_structured,
    rpc_event_check,
    schema_event_check,
)
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, BufferedResponse
from gateway.dataplane.transport import STREAM_CHUNK, Answer, downstream_response_headers, read_limited
from gateway.dataplane.upstream import Upstream
from gateway.dataplane.verdicts import judge
from gateway.errors import ContractViolation, UpstreamError, UpstreamPayloadTooLarge, UpstreamTimeout
from gateway.headers import RETRY_AFTER
from gateway.outcomes import Verdict
from gateway.policies.retry import parse_retry_after
from gateway.protocols.agent_card import rewrite_card
from gateway.protocols.sse import EventTooLarge, SSEParser
from gateway.redaction import Redactor

log = logging.getLogger("agent_gateway.proxy")
#: Where A2A agents publish their card (1.x, and 0.3's name).
CARD_PATHS = frozenset({"/.well-known/agent-card.json", "/.well-known/agent.json"})


class Relay:
    def __init__(
        self, upstream: Upstream, context: ContextTracker, limits: Limits, redactor: Redactor, *, keep_payloads: bool
    ) -> None:
        self._upstream = upstream
        self._redactor = redactor
        self._context = context
        self._limits = limits
        self._keep_payloads = keep_payloads
        self._limit = limits.max_violations

    async def __call__(self, exchange: Exchange) -> web.StreamResponse:
        assert exchange.route is not None
        try:
            async with self._upstream.call(
                exchange, exchange.route, exchange.request_body, exchange.attempt_budget
            ) as answer:
                return await self._relay(exchange, answer)
        except ContractViolation as exc:
            if exchange.committed:
                raise
            raise AttemptFailed(Verdict.RESPONSE_INVALID, exc) from exc
        except UpstreamError as exc:
            if exchange.committed:
                raise
            condition = Verdict.UPSTREAM_TIMEOUT if isinstance(exc, UpstreamTimeout) else Verdict.UPSTREAM_ERROR
            raise AttemptFailed(condition, exc) from exc

    async def _relay(self, exchange: Exchange, answer: Answer) -> web.StreamResponse:
        exchange.status = answer.status
        headers = downstream_response_headers(answer)
        if exchange.act_on_failed_status and answer.status in exchange.policy.failure_statuses:
            raise await self._failed_status(exchange, answer, headers)
        if exchange.path in CARD_PATHS and exchange.request.method == "GET" and answer.status == 200:
            return await self._agent_card(exchange, answer, headers)
        streamed = answer.content_type == EVENT_STREAM
        if answers_checked(exchange):
            if streamed:
                return await self._stream_events(
                    exchange, answer, headers, rpc_event_check(exchange, self._limit, self._redactor)
                )
            return await self._checked_rpc(exchange, answer, headers)
        contract = exchange.contract
        if contract is None:
            return await self._stream_back(exchange, answer, headers)
        events = contract.event_schema(answer.status) if streamed else None
        if events is not None or (streamed and contract.spec.structured_output is not None):
            check = schema_event_check(exchange, contract, events, self._limit, self._redactor)
            return await self._stream_events(exchange, answer, headers, check)
        schema = contract.response_schema(answer.status)
        if schema is None:
            if exchange.verdict is Verdict.VALID:  # the request was checked; nothing says what this answer must be
                exchange.verdict = Verdict.UNCHECKED
            return await self._stream_back(exchange, answer, headers)
        return await self._checked(exchange, answer, headers, contract, schema)

    async def _checked(
        self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str], contract: CompiledContract,
        schema: CompiledSchema,
    ) -> web.Response:  # fmt: skip
        body = await self._read(exchange, answer)
        encoding = answer.headers.get("Content-Encoding")
        produces = contract.spec.produces if 200 <= answer.status < 300 else None
        keep = self._keep_payloads or produces is not None or contract.spec.structured_output is not None
        document, (violations, total) = await contract.check_response_off_loop(
            schema, body, answer.content_type, encoding, self._limit, self._limits.offload_bytes, keep=keep
        )  # a valid answer nobody reads is checked as bytes: no document built
        if self._keep_payloads:
            exchange.response_document = document
        judge(exchange, contract, "response", violations, total)
        check_structured(exchange, contract, document, self._limit)
        if produces is not None:
            await self._context.record(exchange.run_id, produces, document, headers)
        return web.Response(body=body, status=answer.status, reason=answer.reason, headers=headers)

    async def _agent_card(self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str]) -> web.Response:
        """An A2A agent card advertises the agent's own URL; served as it is, the client's next calls would go
        around the gateway (no contract, retry or audit). Its interface URLs are moved behind this route of the
        gateway, as the caller reached it. A signed card cannot be changed: it is relayed, and that is logged."""
        body = await read_limited(answer, self._limits.max_body_bytes)
        assert exchange.route is not None
        request = exchange.request
        base = f"{request.scheme}://{request.host}{exchange.route.effective_prefix}"
        try:
            rewrite = rewrite_card(orjson.loads(body), base)
        except (orjson.JSONDecodeError, ValueError):
            return web.Response(body=body, status=answer.status, reason=answer.reason, headers=headers)
        if rewrite.bypassing:
            exchange.notes.append("agent_card=bypassing")
            log.warning(
                "agent card of route %r sends callers around the gateway (%s)", exchange.route.name,
                "signed" if rewrite.signed else ", ".join(c.pointer for c in rewrite.bypassing),
            )  # fmt: skip
        if rewrite.rewritten:
            body = orjson.dumps(rewrite.card)
            exchange.notes.append("agent_card=rewritten")
        return web.Response(body=body, status=answer.status, reason=answer.reason, headers=headers)

    async def _read(self, exchange: Exchange, answer: Answer) -> bytes:
        """The agent's whole answer (within the body limit), kept on the exchange for the audit trail."""
        body = exchange.response_body = await read_limited(answer, self._limits.max_body_bytes)
        exchange.upstream_seconds = exchange.attempt_seconds
        return body

    async def _checked_rpc(self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str]) -> web.Response:
        body = await self._read(exchange, answer)
        check_rpc_answer(exchange, body, answer.content_type, self._limit)
        return web.Response(body=body, status=answer.status, reason=answer.reason, headers=headers)

    async def _stream_events(
        self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str], check: EventCheck
    ) -> web.StreamResponse:
        """Relay an event stream event by event, each checked before it is written; never the whole stream in
        memory. One event may be as large as the body limit; the stream as a whole has no size limit."""
        response = web.StreamResponse(status=answer.status, reason=answer.reason, headers=headers)
        exchange.verdict = exchange.verdict or Verdict.VALID  # so far: a violating event ends the stream
        exchange.committed = True
        await response.prepare(exchange.request)
        parser = SSEParser(max_event_bytes=self._limits.max_body_bytes)
        async for chunk in answer.content.iter_chunked(STREAM_CHUNK):
            try:
                events = parser.feed(chunk)
            except EventTooLarge as exc:
                raise UpstreamPayloadTooLarge(self._limits.max_body_bytes) from exc  # cut: nothing valid to add
            for event in events:
                ending = check(event)
                if ending is not None:
                    await response.write(ending)
                    await response.write_eof()
                    return response
                await response.write(event.raw)
        if parser.pending:
            await response.write(parser.pending)
        await response.write_eof()
        exchange.upstream_seconds = exchange.attempt_seconds
        return response

    async def _failed_status(self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str]) -> AttemptFailed:
        try:
            body = await read_limited(answer, self._limits.max_body_bytes)
        except UpstreamPayloadTooLarge:
            body = b""  # kept only to relay on reject; the failure is the status, not the size
        exchange.upstream_seconds = exchange.attempt_seconds
        exchange.response_body = body
        route = exchange.route.name if exchange.route else "?"
        error = UpstreamError(route, f"Upstream {route!r} answered {answer.status}.")
        kept = BufferedResponse(answer.status, answer.reason, headers, body)
        retry_after = parse_retry_after(answer.headers.get(RETRY_AFTER))
        return AttemptFailed(Verdict.UPSTREAM_ERROR, error, retry_after=retry_after, response=kept)

    async def _stream_back(self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str]) -> web.StreamResponse:
        limit = self._limits.max_body_bytes if answer.content_type != EVENT_STREAM else None  # long-lived streams
        response = web.StreamResponse(status=answer.status, reason=answer.reason, headers=headers)
        if answer.content_length is not None:
            if limit is not None and answer.content_length > limit:
                raise UpstreamPayloadTooLarge(limit)
            response.content_length = answer.content_length
        exchange.committed = True
        await response.prepare(exchange.request)
        relayed = 0
        async for chunk in answer.content.iter_chunked(STREAM_CHUNK):
            relayed += len(chunk)
            if limit is not None and relayed > limit:  # only a cut connection can say so now
                raise UpstreamPayloadTooLarge(limit)
            await response.write(chunk)
        await response.write_eof()
        exchange.upstream_seconds = exchange.attempt_seconds
        return response
