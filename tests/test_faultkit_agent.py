"""``FaultyAgent`` on its own: schedules, injected faults, what it records, the synchronous helper, and a fault
that cannot be applied failing the test instead of answering something else."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import aiohttp
import pytest

from gateway.testing import Fault, FaultSetupError, FaultyAgent, every, first
from tests.conftest import eventually
from tests.test_faultkit import DRAFT, PLAN, WRITER, Start


async def statuses(agent: FaultyAgent, calls: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        answers = []
        for _ in range(calls):
            async with session.post(agent.url + "/draft", json=PLAN) as response:
                answers.append(response.status)
        return answers


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        pytest.param([None, Fault.status(503)], [200, 503, 200, 200], id="sequence-then-normal"),
        pytest.param(every(2, Fault.status(502)), [200, 502, 200, 502], id="every-2nd"),
        pytest.param(first(3, Fault.status(500)), [500, 500, 500, 200], id="first-3"),
    ],
)
async def test_schedules_pick_the_fault_of_each_call(schedule: object, expected: list[int]) -> None:
    async with FaultyAgent(answer=DRAFT, schedule=schedule) as agent:  # type: ignore[arg-type]
        assert await statuses(agent, 4) == expected
    assert [r.fault is not None for r in agent.received] == [s != 200 for s in expected]


async def test_injected_faults_come_before_the_schedule() -> None:
    async with FaultyAgent(answer=DRAFT, schedule=every(1, Fault.status(500))) as agent:
        agent.inject(None, Fault.status(503))
        assert await statuses(agent, 3) == [200, 503, 500]


async def test_the_answer_may_be_computed_from_the_request() -> None:
    agent = FaultyAgent(answer=lambda received: {"echo": received.json, "call": received.call})
    async with agent, aiohttp.ClientSession() as session, session.post(agent.url + "/x", json={"a": 1}) as response:
        assert await response.json() == {"echo": {"a": 1}, "call": 0}


async def test_it_records_what_the_gateway_forwarded(agent_gateway: Start) -> None:
    async with FaultyAgent(answer=DRAFT) as writer:
        gw = await agent_gateway({"writer": writer}, contracts=[WRITER])
        reply = await gw.post("writer", "/draft?lang=en", json=PLAN, headers={"X-Run-Id": "r9", "X-Agent-Name": "p"})
    assert reply.status == 200
    (seen,) = writer.received
    assert (seen.method, seen.path, seen.query, seen.json) == ("POST", "/draft", "lang=en", PLAN)
    assert seen.headers["X-Run-Id"] == "r9"
    assert "r9" in seen.headers["baggage"]


async def test_a_pointer_naming_nothing_fails_the_test_when_the_agent_closes() -> None:
    agent = FaultyAgent(answer=DRAFT, schedule=[Fault.missing("/draft/nope")])
    with pytest.raises(FaultSetupError, match="nothing at /draft/nope"):
        async with agent:
            assert await statuses(agent, 1) == [599]


async def test_closing_ends_a_hang_at_once() -> None:
    async with FaultyAgent(schedule=[Fault.hang()]) as agent, aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(session.post(agent.url + "/x", json={}))
        await eventually(lambda: agent.calls == 1, what="the agent received the call it hangs on")
        await agent.close()  # returns although the hung call never got an answer
        with pytest.raises(aiohttp.ClientError):
            await request


def test_the_thread_helper_serves_synchronous_tests() -> None:
    with FaultyAgent(answer={"ok": True}, schedule=[Fault.status(503, retry_after=7)]).in_thread() as agent:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(agent.url + "/a", data=b"{}"), timeout=10)
        assert (refused.value.code, refused.value.headers["Retry-After"]) == (503, "7")
        refused.value.close()  # an HTTPError holds the response's socket
        with urllib.request.urlopen(agent.url + "/b", timeout=10) as response:
            assert json.loads(response.read()) == {"ok": True}
    assert [r.path for r in agent.received] == ["/a", "/b"]


async def test_an_agent_started_twice_refuses_instead_of_leaking_its_first_server() -> None:
    async with FaultyAgent(answer={"ok": True}) as agent:
        with pytest.raises(RuntimeError, match="already serving"):
            await agent.start()
