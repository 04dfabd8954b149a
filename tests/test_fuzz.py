"""Property tests on the data path: whatever a caller or an agent sends, the gateway answers with a verdict —
never a 500, never an invalid payload passed on as valid — and nothing is lost or leaked.

Invariants (from the engineering notes): requests sent = upstream hits + local rejects; 0 invalid payloads
passed on; 0 gateway 500s; in-flight gauges, open connections and tasks back to baseline.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import Upstream, contract, eventually

SCHEMA = contract()["request"]["body"]
RESPONSE = contract()["responses"]["200"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {"task": st.one_of(st.text(max_size=5), st.integers()), "priority": st.one_of(st.integers(-2, 3), st.text())},
    optional={"tags": st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3), "x": json_values},
)
raw_bodies = st.one_of(
    near_valid.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    near_valid.map(lambda d: json.dumps(d).encode()[: max(1, len(json.dumps(d)) // 2)]),  # truncated
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=raw_bodies, content_type=st.sampled_from(["application/json", "text/plain", "application/x+json"]))
async def test_requests_never_500_and_only_valid_ones_reach_the_agent(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession, body: bytes,
    content_type: str,
) -> None:  # fmt: skip
    if gateway.state.contracts.table.get("agent.tasks") is None:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
    hits = len(upstream.seen)
    async with http.post(f"{gateway.data_url}/agent/tasks", data=body, headers={"Content-Type": content_type}) as r:
        await r.read()
    try:
        valid = content_type != "text/plain" and jsonschema.Draft202012Validator(SCHEMA).is_valid(json.loads(body))
    except ValueError:
        valid = False
    assert r.status == (200 if valid else 422)
    assert len(upstream.seen) == hits + (1 if valid else 0)  # sent = upstream hits + local rejects
    if valid:
        assert upstream.seen[-1].body == body


@FUZZ
@given(answer=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
async def test_agent_answers_are_never_passed_on_unless_valid(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession, answer: bytes
) -> None:
    from tests.conftest import replying

    if gateway.state.contracts.table.get("agent.tasks") is None:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(request={}))
    upstream.handler = replying(answer)
    async with http.post(f"{gateway.data_url}/agent/tasks", json={}) as resp:
        got = await resp.read()
    try:
        valid = jsonschema.Draft202012Validator(RESPONSE).is_valid(json.loads(answer))
    except ValueError:
        valid = False
    assert resp.status == (200 if valid else 502)
    assert (got == answer) is valid


def _work_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks other than idle keep-alive connection handlers (one per open connection, by design)."""
    return [t for t in asyncio.all_tasks() if "RequestHandler.start" not in repr(t.get_coro())]


async def test_nothing_leaks_after_a_burst_of_mixed_traffic(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
    baseline_tasks = len(_work_tasks())

    async def one(n: int) -> int:
        body: Any = {"task": "t", "priority": n} if n % 3 else {"bad": n}
        async with http.post(f"{gateway.data_url}/agent/tasks", json=body) as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(one(n) for n in range(60)))
    assert sorted(set(statuses)) == [200, 422]
    assert statuses.count(200) == len(upstream.seen) == 40
    await eventually(
        lambda: gateway.proxy.admit.in_flight("agent") == 0 and len(_work_tasks()) <= baseline_tasks,
        what="back to baseline",
    )
    assert gateway.proxy.admit.in_flight("agent") == 0
    assert len(_work_tasks()) <= baseline_tasks  # idle keep-alive connections aside, nothing is left running
