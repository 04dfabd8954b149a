"""The checkpoint stage over a real in-memory store: a valid 2xx answer is stored and replayed without calling
the stage below; a failure, a non-2xx or a streamed answer releases the key; a failing store refuses or bypasses
as the policy says."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gateway.dataplane.checkpoint import Checkpoint
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, Failure
from gateway.errors import CheckpointInFlight, IdempotencyKeyReused, StoreUnavailable, UpstreamError
from gateway.outcomes import Verdict
from gateway.policies.checkpoint import Checkpoints
from gateway.policies.document import DEFAULT_POLICY, PolicySpec
from gateway.store.sqlite import SQLiteStore
from tests.dataplane.conftest import VALID, exchange, policy

KEY = "agent POST /tasks key:k1"


def keyed(body: bytes = b'{"task": "t", "priority": 1}', spec: PolicySpec = DEFAULT_POLICY) -> Exchange:
    done = exchange(headers={"Idempotency-Key": "k1"}, body=body, policy=spec)
    done.checkpoint_key = KEY
    return done


@dataclass
class Agent:
    """The stage below: answers ``status`` with ``VALID`` (recording it as the relay does), or raises."""

    status: int = 200
    streamed: bool = False
    fail: bool = False
    calls: int = 0
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, exchange: Exchange) -> web.StreamResponse:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise Failure(AttemptFailed(Verdict.UPSTREAM_ERROR, UpstreamError("agent", "down")), "reject", 1)
        if self.streamed:
            return web.StreamResponse(status=self.status)
        exchange.response_body = VALID
        return web.Response(body=VALID, status=self.status, content_type="application/json")


async def test_a_stored_answer_is_replayed_without_a_call(store: SQLiteStore) -> None:
    stage = Checkpoint(Checkpoints(store))
    first, agent = keyed(), Agent()
    await stage(first, agent)
    assert first.checkpoint == "stored"
    again = keyed()
    replay = await stage(again, agent)
    assert agent.calls == 1
    assert (replay.status, replay.body, replay.content_type) == (200, VALID, "application/json")  # type: ignore[attr-defined]
    assert (again.checkpoint, again.status, again.verdict) == ("hit", 200, Verdict.VALID)


async def test_the_same_key_with_another_body_is_refused(store: SQLiteStore) -> None:
    stage = Checkpoint(Checkpoints(store))
    await stage(keyed(), Agent())
    with pytest.raises(IdempotencyKeyReused):
        await stage(keyed(b'{"task": "other", "priority": 1}'), Agent())


async def test_a_duplicate_while_the_first_is_in_flight_is_refused(store: SQLiteStore) -> None:
    stage = Checkpoint(Checkpoints(store))
    slow = Agent(gate=asyncio.Event())
    first = asyncio.create_task(stage(keyed(), slow))
    await slow.entered.wait()
    with pytest.raises(CheckpointInFlight):
        await stage(keyed(), Agent())
    slow.gate.set()  # type: ignore[union-attr]
    assert (await first).status == 200


@pytest.mark.parametrize(
    "agent",
    [Agent(fail=True), Agent(status=503), Agent(streamed=True)],
    ids=["failure", "non-2xx", "streamed answer"],
)
async def test_what_is_not_stored_releases_the_key(store: SQLiteStore, agent: Agent) -> None:
    stage = Checkpoint(Checkpoints(store))
    first = keyed()
    with pytest.raises(Failure) if agent.fail else nullcontext():
        await stage(first, agent)
    assert first.checkpoint is None
    again, retried = keyed(), Agent()
    await stage(again, retried)
    assert (retried.calls, again.checkpoint) == (1, "stored")


async def test_a_store_failing_the_claim_refuses_by_default(store: SQLiteStore) -> None:
    stage = Checkpoint(Checkpoints(store))
    await store.close()
    agent = Agent()
    with pytest.raises(StoreUnavailable):
        await stage(keyed(), agent)
    assert agent.calls == 0


async def test_a_store_failing_the_claim_is_bypassed_when_the_policy_says_so(store: SQLiteStore) -> None:
    stage = Checkpoint(Checkpoints(store))
    await store.close()
    done, agent = keyed(spec=policy(checkpoint={"on_store_error": "bypass"})), Agent()
    response = await stage(done, agent)
    assert (response.status, agent.calls, done.checkpoint) == (200, 1, "bypass")


async def test_an_answer_the_store_cannot_keep_is_still_relayed(store: SQLiteStore) -> None:
    stage = Checkpoint(Checkpoints(store))
    done, agent = keyed(), Agent()

    async def then_the_store_fails(exchange: Exchange) -> web.StreamResponse:
        response = await agent(exchange)
        await store.close()
        return response

    response = await stage(done, then_the_store_fails)
    assert (response.status, done.checkpoint) == (200, "bypass")
