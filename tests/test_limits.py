"""Configured limits: body sizes (413 / 502), per-route concurrency (503 + Retry-After), header sizes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway.admin.client import AdminClient
from tests.conftest import TOKEN, Upstream, contract, gateway_config, replying

LIMIT = 64 * 1024


async def limited_gateway(make_gateway: Any, upstream: Upstream, **limits: Any) -> Any:
    route = {"name": "agent", "upstream": upstream.url, **limits.pop("route", {})}
    return await make_gateway(gateway_config([route], limits={"max_body_bytes": LIMIT, **limits}))


async def test_oversized_request_with_content_length_is_413_and_never_forwarded(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gw = await limited_gateway(make_gateway, upstream)
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    for path in ("/agent/tasks", "/agent/uncontracted"):
        async with http.post(gw.data_url + path, data=io.BytesIO(b"x" * (LIMIT + 1))) as resp:
            assert resp.status == 413, path
            problem = await resp.json(content_type=None)
        assert problem["limit_bytes"] == LIMIT
    assert upstream.seen == []


async def test_oversized_chunked_request_is_cut_off(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gw = await limited_gateway(make_gateway, upstream)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"y" * (LIMIT // 4)

    async with http.post(gw.data_url + "/agent/stream", data=body()) as resp:
        assert resp.status == 413
    assert all(len(seen.body) <= LIMIT for seen in upstream.seen)


async def test_oversized_response_is_502(make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    gw = await limited_gateway(make_gateway, upstream)
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    upstream.handler = replying(b'{"result": "' + b"z" * LIMIT + b'"}')
    for path in ("/agent/tasks", "/agent/uncontracted"):
        async with http.post(gw.data_url + path, json={"task": "t", "priority": 1}) as resp:
            assert resp.status == 502, path
            assert (await resp.json(content_type=None))["type"].endswith("/upstream-payload-too-large")


async def test_concurrency_limit_rejects_with_retry_after_and_recovers(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gw = await limited_gateway(make_gateway, upstream, route={"max_concurrency": 2})
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    async def slow(request: web.Request) -> web.Response:
        entered.release()
        await release.wait()
        return web.json_response({"ok": True})

    upstream.handler = slow

    async def call() -> int:
        async with http.get(gw.data_url + "/agent/slow") as resp:
            return resp.status

    first = [asyncio.create_task(call()) for _ in range(2)]
    for _ in range(2):
        await entered.acquire()
    async with http.get(gw.data_url + "/agent/slow") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json(content_type=None))["type"].endswith("/route-overloaded")
    assert gw.proxy.admit.in_flight("agent") == 2
    release.set()
    assert await asyncio.gather(*first) == [200, 200]
    assert gw.proxy.admit.in_flight("agent") == 0
    async with http.get(gw.data_url + "/agent/slow") as resp:
        assert resp.status == 200


async def test_oversized_headers_are_refused(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gw = await limited_gateway(make_gateway, upstream, max_header_field_bytes=1024, max_headers=20)
    async with http.get(gw.data_url + "/agent/h", headers={"X-Big": "a" * 2048}) as resp:
        assert resp.status in (400, 431)
    many = {f"X-H{i}": "v" for i in range(30)}
    async with http.get(gw.data_url + "/agent/h", headers=many) as resp:
        assert resp.status in (400, 431)
    async with http.get(gw.data_url + "/agent/h", headers={"X-Small": "a" * 100}) as resp:
        assert resp.status == 200
    assert len(upstream.seen) == 1
