"""Circuit breaker transitions, driven by a fake clock (no sleeping), in the style of resilience4j's tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.policies.breaker import COMMANDS, TRANSITIONS, BreakerRegistry, CircuitBreaker, State
from gateway.policies.document import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **policy: object) -> CircuitBreaker:
    settings_ = {"window_size": 4, "minimum_calls": 4, "failure_rate_threshold": 0.5, "wait_in_open_seconds": 10,
                 "half_open_calls": 2, **policy}  # fmt: skip
    return CircuitBreaker("route:agent", Breaker(**settings_), clock)  # type: ignore[arg-type]


def call(b: CircuitBreaker, *, failed: bool, duration: float = 0.01) -> bool:
    if not b.try_acquire():
        return False
    b.on_result(failed=failed, duration=duration)
    return True


def test_closed_to_open_needs_minimum_calls_and_threshold() -> None:
    b = breaker(Clock())
    for _ in range(3):
        call(b, failed=True)
    assert b.state is State.CLOSED  # 3 calls < minimum_calls 4
    call(b, failed=False)
    assert b.state is State.OPEN  # 3 failures of 4 = 75% ≥ 50%


def test_failure_rate_below_threshold_stays_closed_with_sliding_count_window() -> None:
    b = breaker(Clock())
    for failed in (True, False, False, False, True, False, False):
        call(b, failed=failed)
    assert b.state is State.CLOSED
    assert b.snapshot()["calls_in_window"] == 4


def test_open_fails_fast_then_half_open_after_wait() -> None:
    clock = Clock()
    b = breaker(clock, consecutive_failures=2)
    call(b, failed=True)
    call(b, failed=True)
    assert b.state is State.OPEN
    assert not b.try_acquire()
    assert b.retry_after() == 10
    clock.now += 9.9
    assert not b.try_acquire()
    clock.now += 0.1
    assert b.try_acquire()
    assert b.state is State.HALF_OPEN


def test_half_open_admits_exactly_k_probes_under_concurrency_then_closes() -> None:
    clock = Clock()
    b = breaker(clock, consecutive_failures=1)
    call(b, failed=True)
    clock.now += 10
    permits = [b.try_acquire() for _ in range(5)]  # five concurrent callers
    assert permits == [True, True, False, False, False]
    b.on_result(failed=False, duration=0.01)
    assert b.state is State.HALF_OPEN
    assert not b.try_acquire()
    b.on_result(failed=False, duration=0.01)
    assert b.state is State.CLOSED
    assert b.transitions == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.CLOSED)]


def test_half_open_reopens_when_probes_fail() -> None:
    clock = Clock()
    b = breaker(clock, consecutive_failures=1)
    call(b, failed=True)
    clock.now += 10
    assert call(b, failed=True)
    assert call(b, failed=False)
    assert b.state is State.OPEN  # 1 of 2 probes failed = 50% ≥ threshold
    assert not b.try_acquire()


def test_released_probe_is_given_back() -> None:
    clock = Clock()
    b = breaker(clock, consecutive_failures=1, half_open_calls=1)
    call(b, failed=True)
    clock.now += 10
    assert b.try_acquire()
    assert not b.try_acquire()
    b.release()
    assert b.try_acquire()


def test_slow_calls_count() -> None:
    b = breaker(Clock(), slow_call_seconds=1.0, slow_call_rate_threshold=0.75)
    for duration in (2.0, 2.0, 0.1, 2.0):
        call(b, failed=False, duration=duration)
    assert b.state is State.OPEN


def test_time_window_forgets_old_outcomes() -> None:
    clock = Clock()
    b = breaker(clock, window="time", window_size=5, minimum_calls=3)
    call(b, failed=True)
    call(b, failed=True)
    clock.now += 6
    call(b, failed=False)
    call(b, failed=False)
    assert b.state is State.CLOSED
    assert b.snapshot()["calls_in_window"] == 2


def test_manual_states() -> None:
    clock = Clock()
    b = breaker(clock)
    b.command("force-open")
    assert b.state is State.FORCED_OPEN
    assert not b.try_acquire()
    clock.now += 60
    assert not b.try_acquire()  # only a command leaves a forced state: no half_open after the wait
    b.command("force-close")
    for _ in range(10):
        assert call(b, failed=True)
    assert b.state is State.FORCED_CLOSED  # records nothing, never trips
    assert b.snapshot()["calls_in_window"] == 0
    b.command("reset")
    assert b.state is State.CLOSED
    assert b.snapshot()["calls_in_window"] == 0


def test_unknown_command_is_refused_and_changes_nothing() -> None:
    b = breaker(Clock())
    with pytest.raises(KeyError):
        b.command("disable")
    assert b.state is State.CLOSED
    assert b.transitions == []


def test_commands_are_named_after_the_states_they_reach() -> None:
    """``force-open`` → ``forced_open``, ``force-close`` → ``forced_closed``: one vocabulary for operators."""
    assert {name: state.value for name, state in COMMANDS.items()} == {
        "force-open": "forced_open", "force-close": "forced_closed", "reset": "closed",
    }  # fmt: skip


def _in(clock: Clock, state: State) -> CircuitBreaker:
    """A breaker (``consecutive_failures=1``, ``half_open_calls=2``, wait 10 s) driven into ``state``."""
    b = breaker(clock, consecutive_failures=1)
    if state in (State.OPEN, State.HALF_OPEN):
        call(b, failed=True)
    if state is State.HALF_OPEN:
        clock.now += 10
        assert b.try_acquire()
        b.release()
    for name, target in COMMANDS.items():
        if target is state and state is not State.CLOSED:
            b.command(name)
    assert b.state is state
    return b


def _fail(b: CircuitBreaker, clock: Clock) -> None:
    call(b, failed=True)


def _succeed_probes(b: CircuitBreaker, clock: Clock) -> None:
    for _ in range(2):
        call(b, failed=False)


def _fail_probes(b: CircuitBreaker, clock: Clock) -> None:
    for failed in (True, False):
        call(b, failed=failed)


def _wait(b: CircuitBreaker, clock: Clock) -> None:
    clock.now += 10
    b.try_acquire()


def _command(name: str) -> Callable[[CircuitBreaker, Clock], None]:
    return lambda b, clock: b.command(name)


#: The module docstring's transition table, row by row: (from, event, to).
TABLE: list[tuple[State, str, Callable[[CircuitBreaker, Clock], None], State]] = [
    (State.CLOSED, "failures reach the threshold", _fail, State.OPEN),
    (State.OPEN, "wait_in_open_seconds elapsed, next call", _wait, State.HALF_OPEN),
    (State.HALF_OPEN, "probes finish below the threshold", _succeed_probes, State.CLOSED),
    (State.HALF_OPEN, "probes finish at or above the threshold", _fail_probes, State.OPEN),
    (State.FORCED_OPEN, "wait_in_open_seconds elapsed, next call", _wait, State.FORCED_OPEN),
    (State.FORCED_CLOSED, "failures reach the threshold", _fail, State.FORCED_CLOSED),
    *[(s, f"command {n}", _command(n), t) for s in State for n, t in COMMANDS.items()],
]  # fmt: skip


@pytest.mark.parametrize(("start", "event", "act", "end"), TABLE, ids=[f"{s.value}-{e}" for s, e, _, _ in TABLE])
def test_transition_table(start: State, event: str, act: Callable[[CircuitBreaker, Clock], None], end: State) -> None:
    clock = Clock()
    b = _in(clock, start)
    act(b, clock)
    assert b.state is end
    assert b.snapshot()["state"] == end.value


def test_registry_replaces_breaker_when_policy_changes() -> None:
    registry = BreakerRegistry(Clock())
    first = registry.get("route:a", Breaker(consecutive_failures=1))
    assert registry.get("route:a", Breaker(consecutive_failures=1)) is first
    assert registry.get("route:a", Breaker(consecutive_failures=2)) is not first


class BreakerMachine(RuleBasedStateMachine):
    """Whatever happens, the breaker only makes legal transitions and never exceeds its probe allowance."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.breaker = breaker(self.clock, consecutive_failures=3)
        self.held = 0

    @rule(failed=st.booleans(), duration=st.floats(0, 3))
    def finish_a_call(self, failed: bool, duration: float) -> None:
        if self.breaker.try_acquire():
            self.breaker.on_result(failed=failed, duration=duration)

    @rule()
    def hold_a_permit(self) -> None:
        if self.breaker.state is State.HALF_OPEN and self.breaker.try_acquire():
            self.held += 1

    @rule(seconds=st.floats(0, 15))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def only_legal_automatic_transitions(self) -> None:
        assert all(t in TRANSITIONS for t in self.breaker.transitions)

    @invariant()
    def probes_bounded(self) -> None:
        assert self.breaker.snapshot()["probes_in_flight"] <= self.breaker.policy.half_open_calls


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("state", list(State))
def test_every_state_is_reachable_and_reported(state: State) -> None:
    b = _in(Clock(), state)
    assert b.snapshot()["state"] == state.value
