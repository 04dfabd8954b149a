"""Backoff, Retry-After and retry budgets with an injected clock and random source."""

from __future__ import annotations

import pytest

from gateway.policies.document import Retry, RetryBudget
from gateway.policies.retry import Backoff, BudgetTracker, may_retry, parse_retry_after


def test_full_jitter_backoff_sequence() -> None:
    policy = Retry(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    assert [Backoff(policy, lambda: 1.0).delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [Backoff(policy, lambda: 0.5).delay(n) for n in range(1, 4)] == [0.05, 0.1, 0.2]
    assert Backoff(policy, lambda: 0.0).delay(5) == 0.0


def test_retry_after_is_a_floor_when_honoured() -> None:
    assert Backoff(Retry(initial_backoff=0.1), lambda: 1.0).delay(1, retry_after=3.0) == 3.0
    assert Backoff(Retry(initial_backoff=0.1, honor_retry_after=False), lambda: 1.0).delay(1, retry_after=3.0) == 0.1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None), ("", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=lambda: 1445412480.0) == expected


def test_budget_caps_retries_at_a_ratio_of_requests_over_a_sliding_window() -> None:
    now = [0.0]
    tracker = BudgetTracker(RetryBudget(ratio=0.2, window_seconds=10, min_retries=1), clock=lambda: now[0])
    for _ in range(10):
        tracker.record_request()
    assert [tracker.try_acquire() for _ in range(3)] == [True, True, False]  # 20% of 10 requests
    now[0] = 11.0  # the window slid past everything
    assert tracker.try_acquire()  # min_retries still allows one
    assert not tracker.try_acquire()


@pytest.mark.parametrize(
    ("method", "idempotent", "keyed", "allowed"),
    [("GET", False, False, True), ("PUT", False, False, True), ("POST", False, False, False),
     ("POST", True, False, True), ("POST", False, True, True), ("PATCH", False, False, False)],
)  # fmt: skip
def test_only_safe_requests_are_retried(method: str, idempotent: bool, keyed: bool, allowed: bool) -> None:
    assert may_retry(method, idempotent, keyed) is allowed
