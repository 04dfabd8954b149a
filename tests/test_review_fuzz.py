"""Review: the fuzz endpoint must not starve the rest of the gateway.

Every SQLite store call runs in the event loop's default thread pool (``min(32, cpus + 4)`` threads). A fuzz run
whose hypothesis search waited in that same pool on an agent that never answers held one of those threads for
its whole budget, so a handful of concurrent fuzz requests left the store, and every admin, data-plane and
readiness call that needs it, waiting behind them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import TOKEN, Upstream, contract, eventually

CONCURRENT = 10
POOL = min(32, (os.cpu_count() or 1) + 4)
"""The size of the event loop's default thread pool, where SQLite store calls run."""
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stalling_agent(release: asyncio.Event, hanging: list[bytes]) -> Any:
    """Answers the first request body it ever sees (the minimal valid request every run starts with) and holds
    every other one until ``release``: the search thread of each run ends up waiting on it."""
    first: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        first[:] = first or [body]
        if body != first[0]:
            hanging.append(body)
            await release.wait()
        return web.json_response({"result": "ok"})

    return handler


async def test_concurrent_fuzz_runs_leave_the_store_and_admin_api_answering(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    release, hanging = asyncio.Event(), list[bytes]()
    upstream.handler = stalling_agent(release, hanging)
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    fuzz = {"against": upstream.url, "max_examples": 20, "seconds": 30, "timeout": 30, "near_valid": "off"}

    async def run() -> int:
        url = f"{gateway.admin_url}/contracts/agent.tasks/fuzz"
        async with http.post(url, json=fuzz, headers=AUTH) as resp:
            await resp.read()
            return resp.status

    runs = [asyncio.create_task(run()) for _ in range(CONCURRENT)]
    try:
        # every run is either refused or waiting on the agent (before the fix: the default pool is full)
        await eventually(lambda: len(hanging) + sum(task.done() for task in runs) >= min(CONCURRENT, POOL))
        async with http.get(f"{gateway.admin_url}/runs", headers=AUTH) as resp:  # a store read
            assert resp.status == 200
        refused = [task.result() for task in runs if task.done()]
        assert not release.is_set()
        assert all(status == 429 for status in refused)
        assert sum(not task.done() for task in runs) >= 1, "every fuzz run ended before the store answered"
    finally:
        release.set()
        statuses = await asyncio.gather(*runs)
    assert set(statuses) <= {200, 429}
    assert 200 in statuses


async def test_a_budget_that_runs_out_while_the_failure_is_replayed_is_a_report_not_a_500(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    """The first generated request times out after the budget ended; hypothesis then replays it to confirm the
    failure, and the condition must give the same answer (it said "out of time, no failure": FlakyFailure, 500)."""
    never = asyncio.Event()
    upstream.handler = stalling_agent(never, [])
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    fuzz = {"against": upstream.url, "max_examples": 5, "seconds": 0.2, "timeout": 0.4, "near_valid": "off"}
    async with http.post(f"{gateway.admin_url}/contracts/agent.tasks/fuzz", json=fuzz, headers=AUTH) as resp:
        report = await resp.json(content_type=None)
    assert resp.status == 200, report
    assert report["budget_exhausted"] is True
    assert [case["outcome"] for case in report["failures"]] == ["upstream_timeout"]


async def test_an_answer_beyond_the_body_limit_is_its_own_failure_not_a_cut_body(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    """An agent answering more than the gateway would relay (``limits.max_body_bytes``): reported as what the
    gateway does with it (502 ``upstream_error``), not as a truncated body judged ``response_invalid``."""
    huge = b'{"result": "' + b"x" * (11 * 1024 * 1024) + b'"}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=huge, content_type="application/json")

    upstream.handler = handler
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    fuzz = {"against": upstream.url, "max_examples": 3, "seconds": 20, "near_valid": "off"}
    async with http.post(f"{gateway.admin_url}/contracts/agent.tasks/fuzz", json=fuzz, headers=AUTH) as resp:
        report = await resp.json(content_type=None)
    assert resp.status == 200, report
    assert report["failures"], report
    assert {case["outcome"] for case in report["failures"]} == {"upstream_error"}
    assert "larger than" in report["failures"][0]["reason"]
