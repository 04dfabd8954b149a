"""Fleet-wide circuit breakers: two gateways on one real redis-server, each with the FleetBoard it starts with.

A dead agent trips one sidecar's breaker; the other sidecar's next request fails fast (503 ``breaker_open``)
without calling the agent. Admin commands apply fleet-wide, and a store outage leaves every breaker working
on local state (never a failed request), saying so in its snapshot and the store-errors metric.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import TOKEN, RedisServer, Upstream, contract, eventually, gateway_config, scripted

BREAKER = "route:agent"
POLICY = {"id": "p", "attach": {"route": "agent"},
          "breaker": {"sharing": "fleet", "consecutive_failures": 2, "wait_in_open_seconds": 60}}  # fmt: skip


@pytest.fixture
async def pair(
    redis_server: RedisServer, make_gateway: Callable[..., Awaitable[RunningGateway]], upstream: Upstream
) -> tuple[RunningGateway, RunningGateway]:  # fmt: skip
    """Two sidecars on one Redis in front of one agent, each having used the breaker once (closed)."""
    config = gateway_config(
        [{"name": "agent", "upstream": upstream.url}], store={"backend": "redis", "url": redis_server.url}
    )
    first = await make_gateway(config)
    async with AdminClient(first.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
        await admin.request("PUT", "/policies/p", body=POLICY)
    second = await make_gateway(config)  # each shares its breakers through the store as start_gateway wires it
    upstream.handler = scripted((200, {"result": "ok"}))
    async with aiohttp.ClientSession() as http:
        for gw in (first, second):
            assert (await call(http, gw))[0] == 200
    return first, second


async def call(http: aiohttp.ClientSession, gw: RunningGateway) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{gw.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        return resp.status, await resp.json(content_type=None)


async def breaker_state(gw: RunningGateway) -> str:
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        return str((await admin.request("GET", f"/breakers/{BREAKER}"))["state"])


async def test_a_breaker_opened_by_one_gateway_is_honoured_by_the_other(
    pair: tuple[RunningGateway, RunningGateway], upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    first, second = pair
    upstream.handler = scripted((503, {"error": "dead"}))  # the agent dies
    assert [(await call(http, first))[0] for _ in range(2)] == [503, 503]
    assert await breaker_state(first) == "open"
    await eventually(lambda: _is(second, "open"), what="the second sidecar adopting the open breaker")
    calls = len(upstream.seen)
    status, problem = await call(http, second)
    assert status == 503
    assert problem["type"].endswith("/breaker_open")
    assert len(upstream.seen) == calls  # the agent was not called


async def _is(gw: RunningGateway, state: str) -> bool:
    return await breaker_state(gw) == state


async def test_commands_apply_to_the_whole_fleet(pair: tuple[RunningGateway, RunningGateway]) -> None:
    first, second = pair
    async with AdminClient(first.admin_url, TOKEN) as admin:
        await admin.request("POST", f"/breakers/{BREAKER}/force-open")
    await eventually(lambda: _is(second, "forced_open"), what="force-open reaching the other sidecar")
    async with AdminClient(second.admin_url, TOKEN) as admin:
        await admin.request("POST", f"/breakers/{BREAKER}/reset")
    await eventually(lambda: _is(first, "closed"), what="reset reaching the first sidecar")


async def test_a_store_outage_leaves_breakers_local_and_never_fails_a_request(
    pair: tuple[RunningGateway, RunningGateway], upstream: Upstream, http: aiohttp.ClientSession,
    redis_server: RedisServer,
) -> None:  # fmt: skip
    first, _ = pair
    redis_server.kill()
    upstream.handler = scripted((503, {"error": "dead"}))
    statuses = [(await call(http, first))[0] for _ in range(3)]
    assert statuses == [503, 503, 503]  # two failures relayed, then the local breaker fails fast
    async with AdminClient(first.admin_url, TOKEN) as admin:
        await eventually(lambda: _view_is(admin, "local"), what="the snapshot saying the breaker decides locally")
        snapshot = await admin.request("GET", f"/breakers/{BREAKER}")
    assert snapshot["state"] == "open"
    metrics = first.state.metrics.exposition().decode()
    assert 'agent_gateway_store_errors_total{operation="put_breaker"}' in metrics


async def _view_is(admin: AdminClient, view: str) -> bool:
    return bool((await admin.request("GET", f"/breakers/{BREAKER}"))["fleet_view"] == view)
