"""Contract changes under traffic apply at once and atomically: one request sees one contract version."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import Upstream, contract


async def test_registration_while_traffic_flows(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    # Odd versions want "a" in the response, even versions want "b"; the agent always answers {"a": ...}.
    # So a request judged wholly by one version is 200 + odd version or 502 + even version: any other pairing
    # would mean the response was checked against a different version than the one reported.
    def version_doc(field: str) -> dict[str, object]:
        return contract(request={"body": {"type": "object"}}, responses={"200": {"required": [field]}})

    await admin.request("PUT", "/contracts/agent.tasks", body=version_doc("a"))

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(0.005)  # widen the window between the request and response checks
        return web.json_response({"a": 1})

    upstream.handler = handler
    outcomes: list[tuple[int, int]] = []

    async def caller() -> None:
        for _ in range(40):
            async with http.post(f"{gateway.data_url}/agent/tasks", json={}) as resp:
                if resp.status == 200:
                    version = int(resp.headers["X-Contract-Verdict"].rsplit("version=", 1)[1])
                else:
                    version = (await resp.json(content_type=None))["version"]
                outcomes.append((resp.status, version))

    async def flipper() -> None:
        for i in range(2, 22):
            await admin.request("PUT", "/contracts/agent.tasks", body=version_doc("b" if i % 2 == 0 else "a"))
            await asyncio.sleep(0.003)

    await asyncio.gather(*(caller() for _ in range(4)), flipper())
    assert len(outcomes) == 160
    assert all((status == 200) == (version % 2 == 1) for status, version in outcomes), outcomes
    assert {status for status, _ in outcomes} == {200, 502}  # traffic saw new versions without a restart
    assert gateway.proxy.admit.in_flight("agent") == 0
