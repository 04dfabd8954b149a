"""Retries: when one is allowed, how long to wait, and the per-route budget that stops retry storms.

Backoff is exponential with **full jitter** (AWS Architecture Blog, "Exponential Backoff and Jitter"): attempt
``n`` (1-based, counting retries) waits ``uniform(0, min(max_backoff, initial * multiplier ** (n - 1)))``.
Full jitter is right when many clients retry against one struggling agent: it spreads them out the most while
keeping the expected wait at half the exponential. A ``Retry-After`` from the agent is honoured as a floor.

The budget follows Envoy/Finagle: over a sliding window, retries may be at most ``ratio`` of requests, plus
``min_retries`` always allowed so that a quiet route can still retry at all. A denied retry fails the request
with its last outcome instead of adding load.

Clock and random source are injected so tests are deterministic.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from gateway.policies.document import IDEMPOTENT_METHODS, Retry, RetryBudget

Clock = Callable[[], float]


def may_retry(method: str, idempotent_operation: bool, has_idempotency_key: bool) -> bool:
    """Only repeat what is safe to repeat: idempotent methods or operations, or keyed requests."""
    return idempotent_operation or has_idempotency_key or method in IDEMPOTENT_METHODS


class Backoff:
    def __init__(self, policy: Retry, rand: Callable[[], float] = random.random) -> None:
        self._policy = policy
        self._rand = rand

    def cap(self, retry_number: int) -> float:
        p = self._policy
        return float(min(p.max_backoff, p.initial_backoff * p.multiplier ** (retry_number - 1)))

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = the first retry)."""
        jittered = self._rand() * self.cap(retry_number)
        if retry_after is not None and self._policy.honor_retry_after:
            return max(jittered, retry_after)
        return jittered


def parse_retry_after(value: str | None, now: Clock = time.time) -> float | None:
    """Seconds from a ``Retry-After`` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


class BudgetTracker:
    """Sliding-window accounting of requests and retries for one route."""

    def __init__(self, budget: RetryBudget, clock: Clock = time.monotonic) -> None:
        self.policy = budget
        self._budget = budget
        self._clock = clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _trim(self, now: float) -> None:
        horizon = now - self._budget.window_seconds
        for events in (self._requests, self._retries):
            while events and events[0] <= horizon:
                events.popleft()

    def record_request(self) -> None:
        self._requests.append(self._clock())

    def try_acquire(self) -> bool:
        """Take a retry from the budget if there is one."""
        now = self._clock()
        self._trim(now)
        allowed = max(self._budget.min_retries, self._budget.ratio * len(self._requests))
        if len(self._retries) + 1 > allowed:
            return False
        self._retries.append(now)
        return True
