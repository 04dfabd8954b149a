"""Escalating when the dead-letter queue cannot be written: a real redis-server is killed under the gateway.

Nothing may be lost and nothing may become a 500: the caller gets a 503 problem with Retry-After saying the
handoff could not be escalated (so it knows it must retry), and the failure is logged and counted.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from tests.conftest import TOKEN, RedisServer, Upstream, contract, gateway_config


async def invalid_answer(request: web.Request) -> web.Response:
    return web.json_response({"result": 7})


async def test_dlq_write_failure_answers_503_with_retry_after_logged_and_counted(
    redis_server: RedisServer, make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    upstream.handler = invalid_answer
    config = gateway_config(
        [{"name": "agent", "upstream": upstream.url}], store={"backend": "redis", "url": redis_server.url}
    )
    gw = await make_gateway(config)
    pol = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
           "escalation": {"respond_status": 202}}  # fmt: skip
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
        await admin.request("PUT", "/policies/p", body=pol)
    url = f"{gw.data_url}/agent/tasks"
    body = {"task": "t", "priority": 1}
    async with http.post(url, json=body) as resp:
        assert resp.status == 202  # the store works: escalated
        outcome_url = f"{gw.data_url}{(await resp.json())['outcome_url']}"

    redis_server.kill()
    async with http.get(outcome_url) as polled:  # the caller polling its outcome meanwhile: a 503, never a 500
        assert polled.status == 503
        assert (await polled.json(content_type=None))["type"].endswith("/store-unavailable")
    with caplog.at_level(logging.ERROR, logger="agent_gateway.escalation"):
        async with http.post(url, json=body) as resp:
            problem = await resp.json(content_type=None)
            assert resp.status == 503
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            assert int(resp.headers["Retry-After"]) > 0
            assert "escalation=failed" in resp.headers["X-Contract-Verdict"]
    assert problem["type"].endswith("/escalation-unavailable")
    assert problem["reason"] == "response_invalid"
    assert "escalation_id" not in problem  # nothing was kept: there is no item to poll
    assert any("could not escalate" in r.getMessage() for r in caplog.records)
    async with http.get(f"{gw.admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as metrics:
        assert 'agent_gateway_escalation_store_errors_total{route="agent"} 1.0' in await metrics.text()

    redis_server.start()  # back (empty): the gateway recovers without a restart, and can shut down cleanly
    async with http.post(url, json=body) as resp:
        assert resp.status == 202
