"""Upstream attempts under a policy: deadline, circuit breaker, retries with backoff and a budget.

``Resilience.run`` calls the proxy's attempt function until it returns a response or the failure is final::

    deadline left? ──no──▶ timeout (DeadlineExceeded)
    breaker admits? ──no──▶ breaker_open
    attempt ──▶ response ──▶ done (the breaker records success, or failure for a listed 5xx relayed as-is)
            └─▶ AttemptFailed(condition) ──▶ action for the condition:
                  retry, and allowed (attempts left, method safe to repeat, budget, deadline) ──▶ sleep, again
                  otherwise ──▶ Failure(condition, final action) for the proxy to answer

Conditions are the contract's failure modes: ``response_invalid``, ``timeout``, ``upstream_error``,
``breaker_open``. The action comes from the contract when it declares one, else from the policy's
``failure_modes``, else ``retry`` for timeouts and upstream errors when the policy configures retries, else
``reject``. A retry that is not allowed becomes the policy's ``retry.exhausted`` action.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from gateway.contracts.document import Action
from gateway.contracts.validation import CompiledContract
from gateway.errors import BreakerOpen, DeadlineExceeded, GatewayError
from gateway.exchange import Exchange
from gateway.policies.breaker import BreakerRegistry, CircuitBreaker
from gateway.policies.document import PolicySpec, Retry
from gateway.policies.retry import Backoff, BudgetTracker, may_retry
from gateway.upstream import DEADLINE_HEADER

DEFAULT_FAILURE_STATUSES = Retry().statuses


@dataclass(frozen=True, slots=True)
class BufferedResponse:
    """An upstream answer read in full, kept so a final ``reject`` can still relay it as it was."""

    status: int
    reason: str | None
    headers: CIMultiDict[str]
    body: bytes

    def to_web(self) -> web.Response:
        return web.Response(body=self.body, status=self.status, reason=self.reason, headers=self.headers)


class AttemptFailed(Exception):
    def __init__(
        self, condition: str, error: GatewayError, *, retry_after: float | None = None,
        response: BufferedResponse | None = None,
    ) -> None:  # fmt: skip
        super().__init__(condition)
        self.condition = condition
        self.error = error
        self.retry_after = retry_after
        self.response = response


class Failure(Exception):
    """The attempts are over; ``action`` says what the proxy answers (reject, escalate, fallback)."""

    def __init__(self, failed: AttemptFailed, action: Action, attempts: int) -> None:
        super().__init__(failed.condition)
        self.condition = failed.condition
        self.error = failed.error
        self.response = failed.response
        self.action = action
        self.attempts = attempts


def action_for(condition: str, contract: CompiledContract | None, policy: PolicySpec) -> Action:
    if contract is not None and condition in contract.spec.declared:
        return contract.spec.action(condition)
    if condition in policy.failure_modes:
        return policy.failure_modes[condition]
    if policy.retry is not None and condition in ("timeout", "upstream_error"):
        return "retry"
    return "reject"


def failure_statuses(policy: PolicySpec) -> frozenset[int]:
    return policy.retry.statuses if policy.retry is not None else DEFAULT_FAILURE_STATUSES


def incoming_deadline(headers: Mapping[str, str], policy: PolicySpec) -> float | None:
    """Seconds the request may take in all: the policy's total, shortened by ``X-Request-Timeout-Ms``."""
    raw = headers.get(DEADLINE_HEADER, "")
    incoming = int(raw) / 1000 if raw.isdigit() else None
    limits = [t for t in (policy.timeouts.total, incoming) if t is not None]
    return min(limits) if limits else None


AttemptFn = Callable[[int, float | None, bool], Awaitable[web.StreamResponse]]


class Resilience:
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

    def breaker_for(self, exchange: Exchange, policy: PolicySpec) -> CircuitBreaker | None:
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

    async def run(self, exchange: Exchange, policy: PolicySpec, attempt: AttemptFn) -> web.StreamResponse:
        assert exchange.route is not None
        retry = policy.retry
        budget = self._budget(exchange.route.name, retry) if retry is not None else None
        if budget is not None:
            budget.record_request()
        breaker = self.breaker_for(exchange, policy)
        total = incoming_deadline(exchange.request.headers, policy)
        deadline = None if total is None else self._clock() + total
        statuses = failure_statuses(policy)
        number = 1
        while True:
            remaining = None if deadline is None else deadline - self._clock()
            final = retry is None or number >= retry.max_attempts
            try:
                response = await self._attempt(exchange, policy, attempt, breaker, number, remaining, final)
            except AttemptFailed as failed:
                action = action_for(failed.condition, exchange.contract, policy)
                if action == "retry" and retry is not None:
                    delay = self._retry_delay(exchange, retry, budget, number, failed, deadline)
                    if delay is not None:
                        status = failed.response.status if failed.response else failed.error.status_code()
                        exchange.retry(status, failed.condition)
                        await self._sleep(delay)
                        number += 1
                        continue
                    action = retry.exhausted
                raise Failure(failed, "reject" if action in ("retry", "pass") else action, number) from failed
            if breaker is not None:
                breaker.on_result(failed=response.status in statuses, duration=exchange.attempt_seconds)
            return response

    async def _attempt(
        self, exchange: Exchange, policy: PolicySpec, attempt: AttemptFn, breaker: CircuitBreaker | None,
        number: int, remaining: float | None, final: bool,
    ) -> web.StreamResponse:  # fmt: skip
        if remaining is not None and remaining <= 0:
            route = exchange.route.name if exchange.route else "?"
            raise AttemptFailed("timeout", DeadlineExceeded(route, "The request's deadline passed before an answer."))
        if breaker is not None and not breaker.try_acquire():
            raise AttemptFailed("breaker_open", BreakerOpen(breaker.name, breaker.retry_after()))
        exchange.breaker_state = breaker.state.value if breaker is not None else None
        limits = [t for t in (policy.timeouts.attempt, remaining) if t is not None]
        try:
            return await attempt(number, min(limits) if limits else None, final)
        except AttemptFailed:
            if breaker is not None:
                breaker.on_result(failed=True, duration=exchange.attempt_seconds)
            raise
        except BaseException:
            if breaker is not None:
                breaker.release()
            raise

    def _retry_delay(
        self, exchange: Exchange, retry: Retry, budget: BudgetTracker | None, number: int,
        failed: AttemptFailed, deadline: float | None,
    ) -> float | None:  # fmt: skip
        """Seconds to wait before the next attempt, or ``None`` when no retry is allowed."""
        request = exchange.request
        contract = exchange.contract
        idempotent = contract is not None and contract.spec.operation.idempotent
        if number >= retry.max_attempts or failed.condition == "breaker_open":
            return None
        if not may_retry(request.method, idempotent, "Idempotency-Key" in request.headers):
            return None
        if exchange.request_body is None and request.body_exists:
            return None  # a streamed body is gone: it cannot be sent again
        delay = Backoff(retry, self._rand).delay(number, failed.retry_after)
        if deadline is not None and self._clock() + delay >= deadline:
            return None
        if budget is not None and not budget.try_acquire():
            return None
        return delay
