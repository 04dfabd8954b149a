"""The attempts stage on a fake clock: retries, ``retry.exhausted``, deadline, breaker, Retry-After and budget,
driven by a scripted stage below it; every wait is asserted from what the fake sleep recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from gateway.contracts.document import Action
from gateway.dataplane.attempts import Attempts
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, Failure
from gateway.errors import BreakerOpen, DeadlineExceeded, UpstreamError, UpstreamTimeout
from gateway.outcomes import Verdict
from gateway.policies.breaker import BreakerRegistry, State
from tests.dataplane.conftest import FakeClock, exchange, policy

OK, ERROR, TIMEOUT, INVALID = 200, Verdict.UPSTREAM_ERROR, Verdict.UPSTREAM_TIMEOUT, Verdict.RESPONSE_INVALID
JITTER = 0.5
"""The fake random source: a full-jitter wait is half its cap (0.05 s for the first retry by default)."""


@dataclass(frozen=True)
class Later:
    """A failed attempt whose agent asked for ``Retry-After: seconds``."""

    seconds: float


Step = int | Verdict | Later


def _failed(step: Verdict | Later) -> AttemptFailed:
    if isinstance(step, Later):
        return AttemptFailed(ERROR, UpstreamError("agent", "503"), retry_after=step.seconds)
    error = UpstreamTimeout("agent", "slow") if step is TIMEOUT else UpstreamError("agent", "failed")
    return AttemptFailed(step, error)


@dataclass
class Script:
    """The stage below the attempts stage: answers (a status) or fails (a condition) in the order given, and
    records what each attempt was told (its number, ``act_on_failed_status`` and its time budget)."""

    steps: list[Step]
    seen: list[tuple[int, bool, float | None]] = field(default_factory=list)

    async def __call__(self, exchange: Exchange) -> web.StreamResponse:
        self.seen.append((exchange.attempt, exchange.act_on_failed_status, exchange.attempt_budget))
        step = self.steps[len(self.seen) - 1]
        if isinstance(step, int):
            return web.Response(status=step)
        raise _failed(step)


@dataclass(frozen=True)
class Case:
    name: str
    steps: list[Step]
    expect: int | tuple[Verdict, Action, int]
    """The status relayed, or the :class:`Failure` raised as (condition, action, attempts)."""
    slept: list[float]
    policy: dict[str, Any] = field(default_factory=dict)
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    calls: int | None = None
    """Attempts that reached the stage below (defaults to the number of steps)."""


CASES = [
    Case("retry then success", [ERROR, OK], 200, [0.05], {"retry": {}}),
    Case("backoff doubles", [TIMEOUT, ERROR, OK], 200, [0.05, 0.1], {"retry": {}}),
    Case("exhausted: reject by default", [ERROR, ERROR], (ERROR, "reject", 2), [0.05], {"retry": {"max_attempts": 2}}),
    Case(
        "exhausted: the policy's action",
        [TIMEOUT, TIMEOUT],
        (TIMEOUT, "escalate", 2),
        [0.05],
        {"retry": {"max_attempts": 2, "exhausted": "escalate"}},
    ),
    Case(
        "POST without Idempotency-Key never retried",
        [ERROR],
        (ERROR, "fallback", 1),
        [],
        {"retry": {"exhausted": "fallback"}},
        method="POST",
    ),
    Case(
        "POST with Idempotency-Key retried",
        [ERROR, OK],
        200,
        [0.05],
        {"retry": {}},
        method="POST",
        headers={"Idempotency-Key": "k1"},
    ),
    Case("response_invalid is not retried by default", [INVALID], (INVALID, "reject", 1), [], {"retry": {}}),
    Case(
        "response_invalid retried when the policy says so",
        [INVALID, OK],
        200,
        [0.05],
        {"retry": {}, "failure_modes": {"response_invalid": "retry"}},
    ),
    Case("no retry policy: the failure is final", [ERROR], (ERROR, "reject", 1), []),
    Case(
        "failure_modes without retries",
        [TIMEOUT],
        (TIMEOUT, "escalate", 1),
        [],
        {"failure_modes": {"upstream_timeout": "escalate"}},
    ),
    Case(
        "pass on a failed attempt is reject",
        [ERROR],
        (ERROR, "reject", 1),
        [],
        {"failure_modes": {"upstream_error": "pass"}},
    ),
    Case("Retry-After is the floor of the wait", [Later(3), OK], 200, [3.0], {"retry": {}}),
    Case("jitter above Retry-After wins", [Later(0.01), OK], 200, [0.05], {"retry": {}}),
    Case("Retry-After ignored when not honoured", [Later(3), OK], 200, [0.05], {"retry": {"honor_retry_after": False}}),
    Case(
        "no retry whose wait outlasts the deadline",
        [Later(5)],
        (ERROR, "reject", 1),
        [],
        {"retry": {}, "timeouts": {"total": 1}},
    ),
    Case(
        "budget exhausted: no retry",
        [ERROR],
        (ERROR, "reject", 1),
        [],
        {"retry": {"budget": {"ratio": 0, "min_retries": 0}}},
    ),
    Case(
        "deadline of 0 ms: no call",
        [],
        (TIMEOUT, "reject", 1),
        [],
        {"retry": {}},
        headers={"X-Request-Timeout-Ms": "0"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_attempts(case: Case) -> None:
    clock = FakeClock()
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: JITTER, sleep=clock.sleep)
    script = Script(case.steps)
    done = exchange(case.method, headers=case.headers, policy=policy(**case.policy))
    if isinstance(case.expect, int):
        response = await attempts(done, script)
        assert response.status == case.expect
    else:
        with pytest.raises(Failure) as raised:
            await attempts(done, script)
        failure = raised.value
        assert (failure.condition, failure.action, failure.attempts) == case.expect
        assert done.verdict is failure.condition
    assert clock.slept == pytest.approx(case.slept)
    assert len(script.seen) == (len(case.steps) if case.calls is None else case.calls)
    assert [attempt for attempt, _, _ in script.seen] == list(range(1, len(script.seen) + 1))
    assert [summary.condition for summary in done.failed_attempts] == [
        step if isinstance(step, Verdict) else ERROR for step in case.steps[: len(clock.slept)]
    ]


async def test_deadline_passed_while_waiting_is_deadline_exceeded() -> None:
    """A wait that overran (a busy loop) leaves no time: the next attempt is never made."""
    clock = FakeClock(oversleep=5)
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: JITTER, sleep=clock.sleep)
    script = Script([ERROR, OK])
    with pytest.raises(Failure) as raised:
        await attempts(exchange("GET", policy=policy(retry={}, timeouts={"total": 1})), script)
    assert raised.value.condition is TIMEOUT
    assert isinstance(raised.value.error, DeadlineExceeded)
    assert (len(script.seen), raised.value.attempts) == (1, 2)


async def test_each_attempt_gets_what_is_left_of_the_deadline() -> None:
    clock = FakeClock()
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: JITTER, sleep=clock.sleep)
    script = Script([ERROR, ERROR, OK])
    await attempts(exchange("GET", policy=policy(retry={}, timeouts={"attempt": 2, "total": 1})), script)
    assert [budget for _, _, budget in script.seen] == pytest.approx([1.0, 0.95, 0.85])


@pytest.mark.parametrize(
    ("fields", "failure"),
    [({}, (Verdict.BREAKER_OPEN, "reject", 1)),
     ({"retry": {}}, (Verdict.BREAKER_OPEN, "reject", 1)),
     ({"failure_modes": {"breaker_open": "fallback"}}, (Verdict.BREAKER_OPEN, "fallback", 1))],
    ids=["reject", "never retried", "the policy's action"],
)  # fmt: skip
async def test_open_breaker_makes_no_call(fields: dict[str, Any], failure: tuple[Verdict, Action, int]) -> None:
    clock = FakeClock()
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: JITTER, sleep=clock.sleep)
    done = exchange("GET", policy=policy(breaker={}, **fields))
    breaker = attempts.breaker_for(done)
    assert breaker is not None
    breaker.command("force-open")
    script = Script([OK])
    with pytest.raises(Failure) as raised:
        await attempts(done, script)
    assert (raised.value.condition, raised.value.action, raised.value.attempts) == failure
    assert isinstance(raised.value.error, BreakerOpen)
    assert script.seen == []
    assert clock.slept == []


async def test_a_listed_5xx_relayed_as_it_is_counts_against_the_breaker() -> None:
    clock = FakeClock()
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: JITTER, sleep=clock.sleep)
    done = exchange("GET", policy=policy(breaker={"consecutive_failures": 1, "minimum_calls": 1}))
    response = await attempts(done, Script([503]))
    assert response.status == 503
    breaker = attempts.breaker_for(done)
    assert breaker is not None
    assert breaker.state is State.OPEN


@pytest.mark.parametrize(
    ("fields", "steps", "flags"),
    [
        ({"retry": {}}, [ERROR, ERROR, 503], [True, True, False]),
        ({"retry": {"max_attempts": 2, "exhausted": "escalate"}}, [ERROR, 503], [True, True]),
        ({"retry": {"max_attempts": 2, "exhausted": "fallback"}}, [ERROR, 503], [True, True]),
        ({"retry": {"max_attempts": 1}}, [503], [False]),
        ({"failure_modes": {"upstream_error": "escalate"}}, [503], [True]),
        ({"failure_modes": {"upstream_error": "fallback"}}, [503], [True]),
        ({"failure_modes": {"upstream_error": "pass"}}, [503], [False]),
        ({}, [503], [False]),
    ],
    ids=["retry, then reject on the last", "exhausted=escalate", "exhausted=fallback", "one attempt, reject",
         "escalate", "fallback", "pass", "no policy"],
)  # fmt: skip
async def test_act_on_failed_status(fields: dict[str, Any], steps: list[Step], flags: list[bool]) -> None:
    """Whether the relay must hold a listed 5xx as a failure: only when the policy would act on it."""
    clock = FakeClock()
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: JITTER, sleep=clock.sleep)
    script = Script(steps)
    response = await attempts(exchange("GET", policy=policy(**fields)), script)
    assert response.status == 503
    assert [flag for _, flag, _ in script.seen] == flags


async def test_a_client_repeating_an_exhausted_key_gets_one_attempt_not_another_round() -> None:
    """3 client retries behind 3 gateway attempts made the agent see 9 calls; now it sees 3 + 1 + 1 + 1."""
    clock = FakeClock()
    attempts = Attempts(BreakerRegistry(), clock=clock, rand=lambda: 0.5, sleep=clock.sleep)
    retrying = policy(retry={"max_attempts": 3})
    calls = 0

    async def always_down(exchange: Exchange) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        raise AttemptFailed(Verdict.UPSTREAM_ERROR, UpstreamError("agent", "down"))

    def keyed() -> Exchange:
        request = exchange(policy=retrying, headers={"Idempotency-Key": "k"})
        request.checkpoint_key = "agent POST /tasks key:k"
        return request

    for _ in range(4):  # the first request, then the client's three retries of it
        with pytest.raises(Failure):
            await attempts(keyed(), always_down)
    assert calls == 3 + 1 + 1 + 1
    clock.now += 120  # long after: the key is a new logical request again
    with pytest.raises(Failure):
        await attempts(keyed(), always_down)
    assert calls == 6 + 3
