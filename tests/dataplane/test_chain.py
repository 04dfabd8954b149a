"""Recover → Attempts → Relay composed as the proxy composes them, on the in-memory upstream and the fake
clock: the agent's answers in order, what the caller gets, and every wait."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from gateway.config import AuditSettings, Limits
from gateway.contracts.context import ContextTracker
from gateway.control.routes import RouteRegistry
from gateway.dataplane.attempts import Attempts
from gateway.dataplane.chain import compose
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.recover import Recover
from gateway.dataplane.relay import Relay
from gateway.errors import ContractViolation, UpstreamError
from gateway.policies.breaker import BreakerRegistry
from gateway.policies.escalation import Escalations
from gateway.redaction import redactor_for
from gateway.store.sqlite import SQLiteStore
from gateway.testing import MemoryUpstream, Scripted
from tests.dataplane.conftest import VALID, FakeClock, Wire, compiled, exchange, policy

BUSY = Scripted(503, b'{"busy": true}', headers={"Retry-After": "1"})
INVALID = Scripted(200, b'{"result": 1}')


@dataclass(frozen=True)
class Case:
    name: str
    answers: list[Scripted]
    status: int | type[Exception]
    body: bytes | None
    slept: list[float]
    policy: dict[str, Any] = field(default_factory=dict)
    method: str = "GET"


CASES = [
    Case("503 retried, then a valid answer", [BUSY, Scripted(200, VALID)], 200, VALID, [1.0],
         {"retry": {}}),
    Case("503 on every attempt: the last one relayed", [BUSY, BUSY, BUSY], 503, b'{"busy": true}', [1.0, 1.0],
         {"retry": {}}),
    Case("POST without a key: the agent's 503 as it was", [BUSY], 503, b'{"busy": true}', [], {"retry": {}}, "POST"),
    Case("invalid answers, then the static fallback", [INVALID, INVALID], 200, b'{"result":"cached"}', [0.05],
         {"retry": {"max_attempts": 2, "exhausted": "fallback"}, "failure_modes": {"response_invalid": "retry"},
          "fallback": {"response": {"body": {"result": "cached"}}}}),
    Case("invalid answer refused", [INVALID], ContractViolation, None, [], {"retry": {}}),
    Case("agent down, no retries", [], UpstreamError, None, []),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_chain(store: SQLiteStore, case: Case) -> None:
    answers = iter(case.answers)

    def agent(*_: object) -> Scripted:
        answer = next(answers, None)
        if answer is None:
            raise UpstreamError("agent", "Cannot connect to upstream 'agent'.")
        return answer

    clock = FakeClock()
    upstream, limits = MemoryUpstream(agent), Limits()
    attempts = Attempts(BreakerRegistry(clock), clock=clock, rand=lambda: 0.5, sleep=clock.sleep)
    recover = Recover(Escalations(store), RouteRegistry(store), upstream, redactor_for(AuditSettings()), limits)
    chain = compose(
        [recover, attempts],
        Relay(upstream, ContextTracker(store), limits, redactor_for(AuditSettings()), keep_payloads=False),
    )
    wire = Wire()
    done: Exchange = exchange(case.method, contract=compiled(), policy=policy(**case.policy), wire=wire)
    if isinstance(case.status, int):
        response = await chain(done)
        assert response.status == case.status
        relayed = response.body if isinstance(response, web.Response) else bytes(wire.sent)
        assert relayed == case.body
    else:
        with pytest.raises(case.status):
            await chain(done)
    assert len(upstream.calls) == max(len(case.answers), 1)
    assert clock.slept == pytest.approx(case.slept)
