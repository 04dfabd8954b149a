"""Attempts under the policy: deadline, circuit breaker, retries with backoff and a budget.

The stage calls the relay below it once per attempt, until an answer is relayed or the failure is final::

    deadline left? ──no──▶ upstream_timeout (DeadlineExceeded)
    breaker admits? ──no──▶ breaker_open
    attempt (relay) ──▶ answer ──▶ done (the breaker records success, or failure for a listed 5xx relayed as-is)
                    └─▶ AttemptFailed(condition) ──▶ action for the condition:
                          retry, and allowed (attempts left, method safe to repeat, budget, deadline) ──▶ wait, again
                          otherwise ──▶ Failure(condition, final action) for the recovery stage

Conditions are the failure modes of :mod:`gateway.outcomes`: ``response_invalid``, ``upstream_timeout``,
``upstream_error``, ``breaker_open``. The action comes from the contract when it declares one, else from the
policy's ``failure_modes``, else ``retry`` for timeouts and upstream errors when the policy configures retries,
else ``reject``. A retry that is not allowed becomes the policy's ``retry.exhausted`` action — decided here and
only here; the relay learns the decision for a listed 5xx through ``exchange.act_on_failed_status``.

Retries do not multiply: a request repeating an ``Idempotency-Key`` whose retries were used up within the last
minute (the client's own retry) gets one attempt, and every answer says how many calls it took
(``X-Gateway-Attempts``).

Clock, random source and sleep are injected so tests drive the timing instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from gateway.contracts.document import Action
from gateway.contracts.validation import CompiledContract
from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, Failure
from gateway.errors import BreakerOpen, DeadlineExceeded
from gateway.headers import DEADLINE, IDEMPOTENCY_KEY
from gateway.outcomes import TRANSIENT, Verdict
from gateway.policies.breaker import BreakerRegistry, CircuitBreaker
from gateway.policies.document import PolicySpec, Retry
from gateway.policies.retry import Backoff, BudgetTracker, may_retry

EXHAUSTED_MEMORY_SECONDS = 60.0
"""How long a key whose retries were used up is remembered (a client's own retries come within seconds)."""
EXHAUSTED_MEMORY_SIZE = 10_000


def action_for(condition: Verdict, contract: CompiledContract | None, policy: PolicySpec) -> Action:
    if contract is not None and condition in contract.spec.declared:
        return contract.spec.action(condition)
    if condition in policy.failure_modes:
        return policy.failure_modes[condition]
    if policy.retry is not None and condition in TRANSIENT:
        return "retry"
    return "reject"


def incoming_deadline(headers: Mapping[str, str], policy: PolicySpec) -> float | None:
    """Seconds the request may take in all: the policy's total, shortened by ``X-Request-Timeout-Ms``."""
    raw = headers.get(DEADLINE, "")
    incoming = int(raw) / 1000 if raw.isdigit() else None
    limits = [t for t in (policy.timeouts.total, incoming) if t is not None]
    return min(limits) if limits else None


class Attempts:
    def __init__(
        self,
        breakers: BreakerRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.breakers = breakers
        self._clock = clock
        self._rand = rand
        self._sleep = sleep
        self._budgets: dict[str, BudgetTracker] = {}
        self._exhausted: OrderedDict[str, float] = OrderedDict()
        """Idempotency keys whose retries were just used up, until when: a client repeating such a key (its own
        retry) gets one attempt, not another round (3 client retries times 3 gateway attempts: 9 agent calls)."""

    def breaker_for(self, exchange: Exchange) -> CircuitBreaker | None:
        policy = exchange.policy
        if policy.breaker is None or exchange.route is None:
            return None
        if policy.breaker.scope == "operation" and exchange.contract is not None:
            return self.breakers.get(f"operation:{exchange.contract.id}", policy.breaker)
        return self.breakers.get(f"route:{exchange.route.name}", policy.breaker)

    def _budget(self, route: str, retry: Retry) -> BudgetTracker:
        tracker = self._budgets.get(route)
        if tracker is None or tracker.policy != retry.budget:
            tracker = self._budgets[route] = BudgetTracker(retry.budget, self._clock)
        return tracker

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        assert exchange.route is not None
        policy = exchange.policy
        retry = policy.retry
        budget = self._budget(exchange.route.name, retry) if retry is not None else None
        if budget is not None:
            budget.record_request()
        breaker = self.breaker_for(exchange)
        total = incoming_deadline(exchange.request.headers, policy)
        deadline = None if total is None else self._clock() + total
        statuses = policy.failure_statuses
        repeated = self._repeated(exchange.checkpoint_key)
        while True:
            remaining = None if deadline is None else deadline - self._clock()
            final = retry is None or repeated or exchange.attempt >= retry.max_attempts
            exchange.act_on_failed_status = self._final_action(
                action_for(Verdict.UPSTREAM_ERROR, exchange.contract, policy), retry, final=final
            ) in ("retry", "escalate", "fallback")
            try:
                response = await self._attempt(exchange, call_next, breaker, remaining)
            except AttemptFailed as failed:
                action = action_for(failed.condition, exchange.contract, policy)
                if action == "retry" and retry is not None and not repeated:
                    delay = self._retry_delay(exchange, retry, budget, failed, deadline)
                    if delay is not None:
                        status = failed.response.status if failed.response else failed.error.status_code()
                        exchange.retry(status, failed.condition)
                        await self._sleep(delay)
                        continue
                exchange.verdict = exchange.verdict or failed.condition
                if exchange.attempt > 1 and exchange.checkpoint_key is not None:
                    self._remember_exhausted(exchange.checkpoint_key)
                raise Failure(failed, self._final_action(action, retry, final=True), exchange.attempt) from failed
            if breaker is not None:
                breaker.on_result(failed=response.status in statuses, duration=exchange.attempt_seconds)
            return response

    def _repeated(self, key: str | None) -> bool:
        if key is None:
            return False
        until = self._exhausted.get(key)
        if until is None:
            return False
        if until < self._clock():
            del self._exhausted[key]
            return False
        return True

    def _remember_exhausted(self, key: str) -> None:
        self._exhausted[key] = self._clock() + EXHAUSTED_MEMORY_SECONDS
        self._exhausted.move_to_end(key)
        while len(self._exhausted) > EXHAUSTED_MEMORY_SIZE:
            self._exhausted.popitem(last=False)

    @staticmethod
    def _final_action(action: Action, retry: Retry | None, *, final: bool) -> Action:
        """What a failing attempt leads to when no retry follows it (``final``): ``retry.exhausted`` for a
        wanted retry, and ``reject`` for ``pass`` (a failed attempt has nothing to pass on)."""
        if not final:
            return action
        if action == "retry":
            action = retry.exhausted if retry is not None else "reject"
        return "reject" if action in ("retry", "pass") else action

    async def _attempt(
        self, exchange: Exchange, call_next: Next, breaker: CircuitBreaker | None, remaining: float | None
    ) -> web.StreamResponse:
        if remaining is not None and remaining <= 0:
            route = exchange.route.name if exchange.route else "?"
            raise AttemptFailed(
                Verdict.UPSTREAM_TIMEOUT, DeadlineExceeded(route, "The request's deadline passed before an answer.")
            )
        if breaker is not None and not breaker.try_acquire():
            raise AttemptFailed(Verdict.BREAKER_OPEN, BreakerOpen(breaker.name, breaker.retry_after()))
        exchange.breaker_state = breaker.state.value if breaker is not None else None
        limits = [t for t in (exchange.policy.timeouts.attempt, remaining) if t is not None]
        exchange.attempt_budget = min(limits) if limits else None
        try:
            return await call_next(exchange)
        except AttemptFailed:
            if breaker is not None:
                breaker.on_result(failed=True, duration=exchange.attempt_seconds)
            raise
        except BaseException:
            if breaker is not None:
                breaker.release()
            raise

    def _retry_delay(
        self, exchange: Exchange, retry: Retry, budget: BudgetTracker | None, failed: AttemptFailed,
        deadline: float | None,
    ) -> float | None:  # fmt: skip
        """Seconds to wait before the next attempt, or ``None`` when no retry is allowed."""
        request = exchange.request
        contract = exchange.contract
        idempotent = contract is not None and contract.spec.operation.idempotent
        if exchange.attempt >= retry.max_attempts or failed.condition is Verdict.BREAKER_OPEN:
            return None
        if not may_retry(request.method, idempotent, IDEMPOTENCY_KEY in request.headers):
            return None
        if exchange.request_body is None and request.body_exists:
            return None  # a streamed body is gone: it cannot be sent again
        delay = Backoff(retry, self._rand).delay(exchange.attempt, failed.retry_after)
        if deadline is not None and self._clock() + delay >= deadline:
            return None
        if budget is not None and not budget.try_acquire():
            return None
        return delay
