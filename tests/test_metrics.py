"""``/metrics`` as Prometheus scrapes it from the admin listener: process series, build info, no ``_created``
series, and label values that are bounded slugs."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import TOKEN, Upstream, contract, scripted


async def scrape(http: aiohttp.ClientSession, gateway: RunningGateway) -> str:
    async with http.get(f"{gateway.admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_metrics_carry_process_series_and_build_info_without_created(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.data_url}/agent/x") as resp:
        assert resp.status == 200
    text = await scrape(http, gateway)
    samples = {s.name: s for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["process_resident_memory_bytes"].value > 0
    assert samples["process_cpu_seconds_total"].value > 0
    assert samples["agent_gateway_build_info"].labels == {"version": __version__}
    assert samples["agent_gateway_build_info"].value == 1
    assert "agent_gateway_requests_total" in samples
    assert not [name for name in samples if name.endswith("_created")]


async def test_failure_labels_are_machine_friendly_slugs(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((200, {"answer": "no result member"}))
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        assert resp.status == 502  # the answer withholds "result"
    text = await scrape(http, gateway)
    (failure,) = [
        s for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == "agent_gateway_failures_total"
    ]  # fmt: skip
    assert failure.labels == {
        "route": "agent", "category": "inter_agent_misalignment", "mode": "information_withholding",
    }  # fmt: skip
