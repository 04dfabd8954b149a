"""The last stage: one call to the agent through the :class:`Upstream`, and its answer back to the caller.

- A listed failure status (``retry.statuses``, default 502/503/504) that the attempts stage will act on is read
  in full and raised as :class:`AttemptFailed` (kept, so a final ``reject`` can still relay it as it was).
- An answer whose status has a schema is read in full (within the body limit), parsed once, checked (in the
  validation pool when large), and relayed as the original bytes when valid; an invalid one is never relayed:
  it becomes ``response_invalid``. What a valid answer produces is recorded for stale-context checks.
- Any other answer streams back chunk by chunk without buffering; once its status line is sent, a failure can
  only cut the connection.
Transport failures become ``upstream_timeout`` / ``upstream_error`` attempts.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from gateway.config import Limits
from gateway.contracts.context import ContextTracker
from gateway.contracts.validation import CompiledContract, CompiledSchema
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, BufferedResponse
from gateway.dataplane.transport import STREAM_CHUNK, Answer, downstream_response_headers, read_limited
from gateway.dataplane.upstream import Upstream
from gateway.dataplane.verdicts import judge
from gateway.errors import ContractViolation, UpstreamError, UpstreamPayloadTooLarge, UpstreamTimeout
from gateway.headers import RETRY_AFTER
from gateway.outcomes import Verdict
from gateway.policies.retry import parse_retry_after


class Relay:
    def __init__(self, upstream: Upstream, context: ContextTracker, limits: Limits, *, keep_payloads: bool) -> None:
        self._upstream = upstream
        self._context = context
        self._limits = limits
        self._keep_payloads = keep_payloads

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
        exchange.span.set_attribute("http.response.status_code", answer.status)
        exchange.status = answer.status
        headers = downstream_response_headers(answer)
        if exchange.act_on_failed_status and answer.status in exchange.policy.failure_statuses:
            raise await self._failed_status(exchange, answer, headers)
        contract = exchange.contract
        schema = contract.response_schema(answer.status) if contract else None
        if schema is None or contract is None:
            return await self._stream_back(exchange, answer, headers)
        return await self._checked(exchange, answer, headers, contract, schema)

    async def _checked(
        self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str], contract: CompiledContract,
        schema: CompiledSchema,
    ) -> web.Response:  # fmt: skip
        limits = self._limits
        body = await read_limited(answer, limits.max_body_bytes)
        exchange.upstream_seconds = exchange.attempt_seconds
        if body is None:
            raise UpstreamPayloadTooLarge(limits.max_body_bytes)
        exchange.response_body = body
        encoding = answer.headers.get("Content-Encoding")
        document, (violations, total) = await contract.check_response_off_loop(
            schema, body, answer.content_type, encoding, limits.max_violations, limits.offload_bytes
        )
        if self._keep_payloads:
            exchange.response_document = document
        judge(exchange, contract, "response", violations, total)
        if contract.spec.produces is not None and 200 <= answer.status < 300:
            await self._context.record(exchange.run_id, contract.spec.produces, document, headers)
        return web.Response(body=body, status=answer.status, reason=answer.reason, headers=headers)

    async def _failed_status(self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str]) -> AttemptFailed:
        body = await read_limited(answer, self._limits.max_body_bytes) or b""
        exchange.upstream_seconds = exchange.attempt_seconds
        exchange.response_body = body
        route = exchange.route.name if exchange.route else "?"
        error = UpstreamError(route, f"Upstream {route!r} answered {answer.status}.")
        kept = BufferedResponse(answer.status, answer.reason, headers, body)
        retry_after = parse_retry_after(answer.headers.get(RETRY_AFTER))
        return AttemptFailed(Verdict.UPSTREAM_ERROR, error, retry_after=retry_after, response=kept)

    async def _stream_back(self, exchange: Exchange, answer: Answer, headers: CIMultiDict[str]) -> web.StreamResponse:
        limit = self._limits.max_body_bytes
        response = web.StreamResponse(status=answer.status, reason=answer.reason, headers=headers)
        if answer.content_length is not None:
            if answer.content_length > limit:
                raise UpstreamPayloadTooLarge(limit)
            response.content_length = answer.content_length
        exchange.committed = True
        await response.prepare(exchange.request)
        relayed = 0
        async for chunk in answer.content.iter_chunked(STREAM_CHUNK):
            relayed += len(chunk)
            if relayed > limit:  # only a cut connection can say so now
                raise UpstreamPayloadTooLarge(limit)
            await response.write(chunk)
        await response.write_eof()
        exchange.upstream_seconds = exchange.attempt_seconds
        return response
