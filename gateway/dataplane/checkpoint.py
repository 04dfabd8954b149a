"""Checkpoint-and-resume on the data path (the store side is ``gateway/policies/checkpoint.py``).

For a keyed request (``Idempotency-Key``, or run + step): a stored answer is replayed (``X-Checkpoint: hit``)
without calling the agent; otherwise this call holds a renewed lease on the key while the stages below run, the
agent's validated answer is stored (``stored``), and a failure releases the key before recovery sees it (an
escalated or fallback answer is produced above this stage, so it is never stored). The store failing: the
policy's ``checkpoint.on_store_error`` says ``refuse`` (503) or ``bypass`` (forward, ``X-Checkpoint: bypass``);
an answer whose checkpoint cannot be stored is still relayed, marked ``bypass``.
"""

from __future__ import annotations

from aiohttp import web

from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange
from gateway.errors import StoreUnavailable
from gateway.outcomes import Verdict
from gateway.policies.checkpoint import Checkpoints, Lease, Replay, request_digest


class Checkpoint:
    def __init__(self, checkpoints: Checkpoints) -> None:
        self._checkpoints = checkpoints

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        key = exchange.checkpoint_key
        claim = None if key is None else await self._claim(exchange, key)
        if claim is None:
            return await call_next(exchange)
        if isinstance(claim, Replay):
            exchange.checkpoint = "hit"
            exchange.status = claim.status
            exchange.verdict = exchange.verdict or Verdict.VALID
            return web.Response(body=claim.body, status=claim.status, headers=claim.headers)
        async with claim:  # renewed while the call runs; released if it ends in an exception
            response = await call_next(exchange)
            await self._store(exchange, claim, response)
            return response

    async def _claim(self, exchange: Exchange, key: str) -> Replay | Lease | None:
        """The stored answer to replay, or this call's lease on ``key``; ``None`` when the store failed and the
        policy says ``bypass``. ``refuse`` → 503."""
        policy = exchange.policy.checkpoint
        try:
            return await self._checkpoints.begin(key, request_digest(exchange.request_body), policy)
        except StoreUnavailable:
            if policy.on_store_error == "refuse":
                raise
            exchange.checkpoint = "bypass"
            return None

    @staticmethod
    async def _store(exchange: Exchange, lease: Lease, response: web.StreamResponse) -> None:
        """Keep a validated answer under the lease's key. A store that fails now must not cost the caller the
        answer the agent already gave: it is relayed, marked ``bypass`` (not stored)."""
        body = exchange.response_body if isinstance(response, web.Response) else None
        try:
            stored = await lease.complete(response.status, response.headers, body)
        except StoreUnavailable:
            exchange.checkpoint = "bypass"
            return
        if stored:
            exchange.checkpoint = "stored"
