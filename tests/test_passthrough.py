"""Pass-through fidelity: what the caller sends is what the agent gets, and back, minus hop-by-hop fields."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.app import RunningGateway
from tests.conftest import Upstream, gateway_config


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_methods_paths_and_query_strings_are_forwarded(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession, method: str
) -> None:
    url = URL(f"{gateway.data_url}/agent/a/b%20c?x=1&x=2&y=%2F", encoded=True)
    async with http.request(method, url) as resp:
        assert resp.status == 200
    seen = upstream.seen[0]
    assert (seen.method, seen.path, seen.query_string) == (method, "/a/b%20c", "x=1&x=2&y=%2F")


async def test_head_is_forwarded_without_body(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async with http.head(f"{gateway.data_url}/agent/x") as resp:
        assert resp.status == 200
        assert await resp.read() == b""
    assert upstream.seen[0].method == "HEAD"


async def test_headers_forwarded_hop_by_hop_dropped_forwarding_headers_added(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    headers = {
        "X-Custom": "kept",
        "Authorization": "Bearer agent-token",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "dropped because Connection names it",
        "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic xyz",
        "TE": "trailers",
        "X-Forwarded-For": "10.0.0.1",
    }
    async with http.get(f"{gateway.data_url}/agent/h", headers=headers) as resp:
        assert resp.status == 200
    got = {k.lower(): v for k, v in upstream.seen[0].headers.items()}
    assert got["x-custom"] == "kept"
    assert got["authorization"] == "Bearer agent-token"
    for name in ("x-secret-hop", "keep-alive", "proxy-authorization", "te"):
        assert name not in got
    assert got["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == f"127.0.0.1:{gateway.data_port}"
    assert got["via"] == "1.1 agent-gateway"
    assert got["host"] == f"127.0.0.1:{upstream.server.port}"


@pytest.mark.parametrize("status", [200, 201, 204, 301, 400, 404, 418, 500, 503])
async def test_status_codes_and_response_headers_preserved(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession, status: int
) -> None:
    async def handler(request: web.Request) -> web.Response:
        headers = {"X-Agent": "b", "Location": "/elsewhere", "Set-Cookie": "a=1"}
        return web.Response(status=status, body=None if status == 204 else b"payload", headers=headers)

    upstream.handler = handler
    async with http.get(f"{gateway.data_url}/agent/s", allow_redirects=False) as resp:
        assert resp.status == status
        assert resp.headers["X-Agent"] == "b"
        assert resp.headers["Location"] == "/elsewhere"
        assert resp.headers["Set-Cookie"] == "a=1"
        assert resp.headers["Via"] == "1.1 agent-gateway"
        assert await resp.read() == (b"" if status == 204 else b"payload")


async def test_binary_bodies_round_trip_unchanged(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=(await request.read())[::-1], content_type="application/octet-stream")

    upstream.handler = handler
    async with http.post(f"{gateway.data_url}/agent/bin", data=io.BytesIO(blob)) as resp:
        assert resp.status == 200
        assert await resp.read() == blob[::-1]
    assert upstream.seen[0].body == blob
    assert upstream.seen[0].headers["Content-Length"] == str(len(blob))


async def test_streamed_bodies_flow_both_ways_in_chunks(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    parts = [os.urandom(50_000) for _ in range(8)]

    async def chunks() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

    upstream.handler = handler
    async with http.post(f"{gateway.data_url}/agent/stream", data=chunks()) as resp:
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        assert await resp.read() == b"".join(parts)
    assert upstream.seen[0].body == b"".join(parts)


async def test_compressed_bodies_are_relayed_untouched(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    import gzip

    plain = b'{"hello": "world"}' * 100
    packed = gzip.compress(plain)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    upstream.handler = handler
    async with http.post(
        f"{gateway.data_url}/agent/z", data=packed, headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip"}
    ) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert await resp.read() == packed
    assert upstream.seen[0].headers["Content-Encoding"] == "gzip"
    assert upstream.seen[0].body == plain  # the test agent's own server inflates it: the gzip arrived intact
    assert upstream.seen[0].headers["Accept-Encoding"] == "gzip"


async def test_route_matching_prefixes_and_default(
    make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    planner, planner_v2, fallback = await make_upstream(None), await make_upstream(None), await make_upstream(None)
    gw = await make_gateway(
        gateway_config(
            [
                {"name": "planner", "upstream": planner.url},
                {"name": "planner-v2", "upstream": planner_v2.url, "prefix": "/planner/v2"},
                {"name": "sidecar", "upstream": fallback.url, "default": True},
            ]
        )
    )
    for path in ("/planner", "/planner/x", "/planner/v2/y", "/plannerx", "/other/z"):
        async with http.get(gw.data_url + path) as resp:
            assert resp.status == 200
    assert [s.path for s in planner.seen] == ["/", "/x"]
    assert [s.path for s in planner_v2.seen] == ["/y"]
    assert [s.path for s in fallback.seen] == ["/plannerx", "/other/z"]


async def test_unknown_path_without_default_route_is_a_404_problem(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.data_url}/nowhere") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
    assert problem["type"].endswith("/no-route")
    assert len(problem["trace_id"]) == 32
