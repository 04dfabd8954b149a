"""Check the request against its contract: body, headers and query schemas, then stale context.

A refused request is never sent to the agent. Its verdict's declared action decides what the caller gets: the
problem document (``reject``, the default), or — for ``escalate`` and ``fallback`` — a :class:`Failure` that the
recovery stage above carries out. A body of ``limits.offload_bytes`` or more is parsed and checked in the
validation pool, off the event loop.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.config import Limits
from gateway.contracts.context import ContextTracker
from gateway.contracts.validation import CompiledContract
from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, Failure
from gateway.dataplane.verdicts import judge
from gateway.errors import ContractViolation, StoreUnavailable
from gateway.outcomes import Verdict


class CheckRequest:
    def __init__(self, context: ContextTracker, limits: Limits, *, keep_payloads: bool) -> None:
        self._context = context
        self._max_violations = limits.max_violations
        self._offload_bytes = limits.offload_bytes
        self._keep_payloads = keep_payloads

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        if exchange.rpc_calls:
            self._check_calls(exchange)
        if exchange.contract is not None:
            await self._check(exchange, exchange.contract)
        exchange.request_verdict = exchange.verdict
        exchange.request_notes = len(exchange.notes)
        return await call_next(exchange)

    async def _check(self, exchange: Exchange, contract: CompiledContract) -> None:
        """Schemas, then stale context. The parsed document lives only in this frame: kept alive across the
        agent's answer, a 100 KiB document's thousands of objects would be rescanned by every collection."""
        try:
            document = await self._check_schemas(exchange, contract)
            await self._check_context(exchange, contract, document)
        except ContractViolation as refused:
            raise _refusal(exchange, contract, refused) from refused

    def _check_calls(self, exchange: Exchange) -> None:
        """Each JSON-RPC call's ``params`` against its method's contract, at ``/params`` (``/<i>/params`` in a
        batch); one refused call refuses the whole body, as the agent would receive it whole."""
        for call in exchange.rpc_calls:
            contract = call.contract
            if contract is None or contract.rpc_params is None:
                continue
            violations, total = contract.rpc_params.check(call.message.body, self._max_violations)
            prefix = "/params" if call.index is None else f"/{call.index}/params"
            shifted = tuple(v.under(prefix) for v in violations)
            try:
                judge(exchange, contract, "request", shifted, total)
            except ContractViolation as refused:
                raise _refusal(exchange, contract, refused) from refused

    async def _check_schemas(self, exchange: Exchange, contract: CompiledContract) -> Any:
        """The parsed body, built only when the context check or the audit's kept payloads read it (a valid body
        is otherwise checked as bytes: a parsed 100 KiB document is thousands of objects to build, free and scan);
        kept on the exchange only if the audit keeps payloads."""
        keep = self._keep_payloads or contract.spec.consumes is not None
        document, (violations, total) = await contract.check_request_off_loop(
            exchange.request, exchange.request_body, self._max_violations, self._offload_bytes, keep=keep
        )
        if self._keep_payloads:
            exchange.request_document = document
        judge(exchange, contract, "request", violations, total)
        return document

    async def _check_context(self, exchange: Exchange, contract: CompiledContract, document: Any) -> None:
        consumes = contract.spec.consumes
        if consumes is None:
            return
        try:
            stale = await self._context.check(exchange.run_id, consumes, document, exchange.request.headers)
        except StoreUnavailable:
            if exchange.policy.context.on_store_error == "refuse":
                raise  # 503: a request is never passed on as checked when it was not
            exchange.notes.append("context=unchecked")
            return
        if stale is not None:
            judge(exchange, contract, "request", (stale,), 1, verdict=Verdict.STALE_CONTEXT)


def _refusal(exchange: Exchange, contract: CompiledContract, refused: ContractViolation) -> Exception:
    verdict = exchange.verdict or Verdict.REQUEST_INVALID
    action = contract.spec.action(verdict)
    if action in ("escalate", "fallback"):
        return Failure(AttemptFailed(verdict, refused), action, attempts=0)
    return refused
