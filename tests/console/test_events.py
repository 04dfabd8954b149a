"""``GET /events``: the console's live feed, read by a real client from a real gateway (and a fleet on Redis)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import PATIENCE, TOKEN, Upstream, contract, gateway_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MakeGateway = Callable[..., Awaitable[RunningGateway]]


class Feed:
    """A reader of one event stream; :meth:`until` fails after ``PATIENCE`` seconds rather than hang."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def frame(self) -> tuple[str, Any] | None:
        """The next event as ``(name, data)``; ``None`` at the end of the stream. Comments are skipped."""
        while True:
            raw = await self.response.content.readuntil(b"\n\n")
            if not raw.endswith(b"\n\n"):
                return None
            lines = dict(line.split(b": ", 1) for line in raw.strip().split(b"\n") if not line.startswith(b":"))
            if lines:
                return lines[b"event"].decode(), orjson.loads(lines[b"data"])

    async def until(self, name: str, where: Callable[[Any], bool] = lambda data: True) -> Any:
        async def scan() -> Any:
            while (event := await self.frame()) is not None:
                if event[0] == name and where(event[1]):
                    return event[1]
            raise AssertionError(f"the stream ended before a {name!r} event")

        return await asyncio.wait_for(scan(), PATIENCE)


@asynccontextmanager
async def feed(http: aiohttp.ClientSession, gateway: RunningGateway) -> AsyncIterator[Feed]:
    async with http.get(f"{gateway.admin_url}/events", headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        reader = Feed(response)
        await reader.until("ready")
        yield reader


async def test_the_feed_needs_the_token(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.admin_url}/events") as response:
        assert response.status == 401
        assert response.headers["Content-Type"].startswith("application/problem+json")


async def test_new_handoffs_and_dlq_changes_are_streamed(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = None  # echoes the request: no "result" member, so the answer breaks the contract
    policy = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
              "escalation": {"respond_status": 202}}  # fmt: skip
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
        await admin.request("PUT", "/policies/p", body=policy)
    async with feed(http, gateway) as events:
        async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1},
                             headers={"X-Run-Id": "live-1", "X-Agent-Name": "planner"}) as resp:  # fmt: skip
            assert resp.status == 202
            item_id = (await resp.json())["escalation_id"]
        handoff = await events.until("handoff", lambda data: data["run_id"] == "live-1")
        assert (handoff["source"], handoff["target"], handoff["verdict"]) == ("planner", "agent", "response_invalid")
        assert "request_payload" not in handoff  # the feed announces; the timeline tells the story
        assert (await events.until("run"))["run_id"] == "live-1"
        item = await events.until("dlq", lambda data: data["id"] == item_id)
        assert (item["status"], item["pending"], item["run_id"]) == ("pending", 1, "live-1")

        async with AdminClient(gateway.admin_url, TOKEN) as admin:
            await admin.request("POST", f"/dlq/{item_id}/discard", body={})
        closed = await events.until("dlq", lambda data: data["id"] == item_id)
        assert (closed["status"], closed["pending"]) == ("discarded", 0)


async def test_a_handoff_through_another_gateway_of_the_fleet_is_streamed(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession, redis_url: str
) -> None:
    shared = {"backend": "redis", "url": redis_url, "prefix": f"console-{secrets.token_hex(4)}:"}
    watched = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], store=shared))
    other = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], store=shared))
    async with feed(http, watched) as events:
        async with http.post(f"{other.data_url}/agent/x", json={}, headers={"X-Run-Id": "elsewhere"}) as resp:
            assert resp.status == 200
        handoff = await events.until("handoff")
        assert (handoff["run_id"], handoff["verdict"]) == ("elsewhere", "unchecked")


async def test_an_open_stream_ends_when_the_gateway_closes(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}]))
    async with feed(http, gateway) as events:
        await asyncio.wait_for(gateway.close(), PATIENCE)  # without the shutdown hook: 60 s of aiohttp's timeout
        assert await asyncio.wait_for(events.frame(), PATIENCE) is None
