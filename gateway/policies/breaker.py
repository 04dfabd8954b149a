"""Circuit breakers with resilience4j semantics, one per upstream (or per operation).

The states are named as the admin commands that reach them (``force-open`` → ``forced_open``,
``force-close`` → ``forced_closed``, ``reset`` → ``closed``), so an operator reads back the state they asked for.

=============  ==================================================================  ==============
from           event                                                               to
=============  ==================================================================  ==============
closed         failure rate ≥ threshold over the window (with ≥ ``minimum_calls``   open
               outcomes), or slow-call rate ≥ its threshold, or
               ``consecutive_failures`` in a row
open           ``wait_in_open_seconds`` elapsed, on the next call                  half_open
half_open      the ``half_open_calls`` probes finish below the threshold           closed
half_open      the probes finish at or above the threshold                         open
any            command ``force-open``                                              forced_open
any            command ``force-close``                                             forced_closed
any            command ``reset``                                                   closed
=============  ==================================================================  ==============

``closed`` and ``forced_closed`` permit every call (``forced_closed`` records nothing, so it never trips);
``open`` and ``forced_open`` permit none; ``half_open`` permits exactly ``half_open_calls`` calls at once (the
probes) and rejects the rest. Only a command leaves a forced state. Entering any state starts a fresh window. A
call counts as a failure when the caller says so (connect error, timeout, a listed 5xx, a response contract
violation) and as slow when it took at least ``slow_call_seconds``. The clock is injected, so the transitions
are tested without sleeping.

With ``sharing: fleet`` a breaker also reports its transitions into ``open``, ``closed`` and the forced states
to its :class:`Fleet` (``gateway/policies/fleet.py``), and :meth:`CircuitBreaker.adopt` applies the ones other
gateways made; ``half_open`` is never shared (each gateway probes for itself).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.policies.document import Breaker

Clock = Callable[[], float]


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


#: The transitions the breaker may make by itself (a command may move it from any state to the one it names).
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.CLOSED),
     (State.HALF_OPEN, State.OPEN)}
)  # fmt: skip


#: The admin commands and the state each one puts a breaker in.
COMMANDS: Mapping[str, State] = {
    "force-open": State.FORCED_OPEN,
    "force-close": State.FORCED_CLOSED,
    "reset": State.CLOSED,
}


#: The states a fleet-shared breaker tells the other gateways about.
SHARED_STATES = frozenset({State.OPEN, State.CLOSED, State.FORCED_OPEN, State.FORCED_CLOSED})


class Fleet(Protocol):
    """Where fleet-shared breakers publish their transitions and learn the fleet's (``FleetBoard``)."""

    @property
    def synced(self) -> bool:
        """Whether the last exchange with the store worked (else breakers decide locally until it does)."""
        ...

    def published(self, breaker: CircuitBreaker, *, manual: bool) -> None: ...

    def joined(self, breaker: CircuitBreaker) -> None:
        """A breaker was created (first use, or its policy changed): apply the fleet's newest transition."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    at: float
    failed: bool
    slow: bool


class CircuitBreaker:
    def __init__(self, name: str, policy: Breaker, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self.state = State.CLOSED
        self._outcomes: deque[Outcome] = deque()
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self.transitions: list[tuple[State, State]] = []
        self.fleet: Fleet | None = None

    # -- permission --------------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """May a call go to the upstream now? A ``True`` must be followed by ``on_result`` or ``release``."""
        if self.state is State.OPEN and self._clock() - self._opened_at >= self.policy.wait_in_open_seconds:
            self._move(State.HALF_OPEN)
        if self.state in (State.CLOSED, State.FORCED_CLOSED):
            return True
        if self.state is State.HALF_OPEN and len(self._outcomes) + self._probes_in_flight < self.policy.half_open_calls:
            self._probes_in_flight += 1
            return True
        return False

    def release(self) -> None:
        """Give back a permission whose call produced no verdict (cancelled, or refused locally)."""
        if self.state is State.HALF_OPEN and self._probes_in_flight:
            self._probes_in_flight -= 1

    def retry_after(self) -> float:
        """Seconds until an OPEN breaker will admit probes (for ``Retry-After``)."""
        return max(1.0, self.open_remaining())

    def open_remaining(self) -> float:
        """Seconds an OPEN breaker stays open (0 in any other state)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self.policy.wait_in_open_seconds - (self._clock() - self._opened_at))

    # -- outcomes ----------------------------------------------------------------------------------------

    def on_result(self, *, failed: bool, duration: float) -> None:
        slow = self.policy.slow_call_seconds is not None and duration >= self.policy.slow_call_seconds
        if self.state is State.HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
        elif self.state is not State.CLOSED:
            return  # FORCED_CLOSED records nothing; a late result after OPEN/FORCED_OPEN changes nothing
        self._outcomes.append(Outcome(self._clock(), failed, slow))
        self._consecutive = self._consecutive + 1 if failed else 0
        self._trim()
        self._evaluate()

    def _trim(self) -> None:
        if self.state is State.HALF_OPEN:
            return
        if self.policy.window == "count":
            while len(self._outcomes) > self.policy.window_size:
                self._outcomes.popleft()
        else:
            horizon = self._clock() - self.policy.window_size
            while self._outcomes and self._outcomes[0].at <= horizon:
                self._outcomes.popleft()

    def _rates(self) -> tuple[float, float]:
        calls = len(self._outcomes)
        failures = sum(o.failed for o in self._outcomes)
        slow = sum(o.slow for o in self._outcomes)
        return failures / calls, slow / calls

    def _tripped(self) -> bool:
        failure_rate, slow_rate = self._rates()
        return failure_rate >= self.policy.failure_rate_threshold or (
            self.policy.slow_call_seconds is not None and slow_rate >= self.policy.slow_call_rate_threshold
        )

    def _evaluate(self) -> None:
        p = self.policy
        if self.state is State.HALF_OPEN:
            if len(self._outcomes) >= p.half_open_calls:
                self._move(State.OPEN if self._tripped() else State.CLOSED)
            return
        if (p.consecutive_failures is not None and self._consecutive >= p.consecutive_failures) or (
            len(self._outcomes) >= p.minimum_calls and self._tripped()
        ):
            self._move(State.OPEN)

    # -- transitions -------------------------------------------------------------------------------------

    def _move(self, target: State, *, manual: bool = False, share: bool = True) -> None:
        if not manual and (self.state, target) not in TRANSITIONS:
            raise RuntimeError(f"illegal breaker transition {self.state.value} → {target.value}")
        self.transitions.append((self.state, target))
        self.state = target
        self._outcomes.clear()
        self._consecutive = 0
        self._probes_in_flight = 0
        if target is State.OPEN:
            self._opened_at = self._clock()
        if share and self.fleet is not None and target in SHARED_STATES:
            self.fleet.published(self, manual=manual)

    def adopt(self, target: State, *, manual: bool, open_for: float = 0.0) -> None:
        """Apply a transition another gateway shared (it is not published again). Only a command leaves a forced
        state; an automatic ``closed`` leaves a closed breaker's own window alone; ``open`` lasts ``open_for``
        seconds (what is left of the other gateway's wait), an ``open`` already being probed here opens again."""
        forced = self.state in (State.FORCED_OPEN, State.FORCED_CLOSED)
        if not manual and (forced or self.state is target is State.CLOSED):
            return
        self._move(target, manual=True, share=False)
        if target is State.OPEN:
            self._opened_at = self._clock() - self.policy.wait_in_open_seconds + open_for

    def command(self, name: str) -> None:
        """Apply an admin command (a key of :data:`COMMANDS`); raises ``KeyError`` for an unknown one."""
        self._move(COMMANDS[name], manual=True)

    def snapshot(self) -> dict[str, object]:
        calls = len(self._outcomes)
        failure_rate, slow_rate = self._rates() if calls else (0.0, 0.0)
        return {
            "name": self.name, "state": self.state.value, "calls_in_window": calls,
            "failure_rate": round(failure_rate, 4), "slow_call_rate": round(slow_rate, 4),
            "consecutive_failures": self._consecutive, "probes_in_flight": self._probes_in_flight,
            "sharing": self.policy.sharing,
            "fleet_view": None if self.fleet is None else "shared" if self.fleet.synced else "local",
        }  # fmt: skip


class BreakerRegistry:
    """Breakers by name (``route:<name>`` or ``operation:<contract id>``), created on first use and replaced
    when the policy that configures them changes."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self.fleet: Fleet | None = None
        """Set by ``FleetBoard``: breakers whose policy says ``sharing: fleet`` join it."""

    def get(self, name: str, policy: Breaker) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None or breaker.policy != policy:
            breaker = self._breakers[name] = CircuitBreaker(name, policy, self._clock)
            if policy.sharing == "fleet" and self.fleet is not None:
                breaker.fleet = self.fleet
                self.fleet.joined(breaker)
        return breaker

    def find(self, name: str) -> CircuitBreaker | None:
        return self._breakers.get(name)

    def all(self) -> list[CircuitBreaker]:
        return [self._breakers[name] for name in sorted(self._breakers)]
