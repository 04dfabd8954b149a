"""Durable escalation webhooks (the outbox) and the DLQ stream, against real gateways, a real webhook receiver
and, for the Redis backend, a real redis-server.

The webhook survives a restart mid-backoff: the first gateway's attempt fails and the gateway is closed; a
second gateway on the same store delivers it, signed, under the same ``Webhook-Id``. Several sidecars polling
one outbox deliver each entry once; a receiver that never accepts ends with the delivery marked failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway, start_gateway
from gateway.config import GatewayConfig
from gateway.policies.outbox import SIGNATURE_HEADER, verify
from gateway.store.redis_fleet import DLQ_GROUP
from tests.conftest import TOKEN, RedisServer, Upstream, contract, eventually, gateway_config, scripted

SECRET = b"hook-secret"


@dataclass
class Receiver:
    """A webhook receiver that answers 500 while ``failing`` and records every delivery it gets."""

    url: str = ""
    failing: bool = True
    deliveries: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [headers["Webhook-Id"] for _, headers in self.deliveries]


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    hook = Receiver()

    async def receive(request: web.Request) -> web.Response:
        hook.deliveries.append((await request.read(), dict(request.headers)))
        return web.Response(status=500 if hook.failing else 204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    hook.url = str((await aiohttp_server(app)).make_url("/hook"))
    return hook


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A store two gateways can share one after the other: a SQLite file, or a redis-server of this test's."""
    if request.param == "sqlite":
        yield {"path": str(tmp_path / "gateway.db")}
    else:
        yield {"backend": "redis", "url": request.getfixturevalue("redis_server").url}


def escalating(receiver: Receiver, **webhook: Any) -> dict[str, Any]:
    return {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
            "escalation": {"respond_status": 202,
                           "webhook": {"url": receiver.url, "secret_env": "HOOK_SECRET", **webhook}}}  # fmt: skip


@pytest.fixture
async def config(store: dict[str, str], upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    upstream.handler = scripted((200, {"result": 7}))  # breaks the contract: escalated
    return gateway_config([{"name": "agent", "upstream": upstream.url}], store=store)


async def escalate(gw: RunningGateway, policy: dict[str, Any]) -> str:
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
        await admin.request("PUT", "/policies/p", body=policy)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gw.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp,
    ):
        assert resp.status == 202
        return str((await resp.json())["escalation_id"])


async def webhook_of(gw: RunningGateway, item_id: str) -> dict[str, Any]:
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        item = await admin.request("GET", f"/dlq/{item_id}")
    return dict(item["webhook"])


async def test_a_webhook_survives_a_gateway_restart_mid_backoff(config: GatewayConfig, receiver: Receiver) -> None:
    first = await start_gateway(config)
    try:
        item_id = await escalate(first, escalating(receiver))
        await eventually(lambda: _attempts_stored(first, item_id, 1), what="the failed attempt stored")
    finally:
        await first.close()
    assert len(receiver.deliveries) == 1
    receiver.failing = False
    second = await start_gateway(config)
    try:
        delivered = await eventually(
            lambda: _status(second, item_id, "delivered"), what="the second gateway delivering"
        )
    finally:
        await second.close()
    assert delivered["attempts"] == 2
    assert len(set(receiver.ids())) == 1  # one idempotency id for both attempts
    body, headers = receiver.deliveries[-1]
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)
    assert json.loads(body)["escalation"]["id"] == item_id


async def _attempts_stored(gw: RunningGateway, item_id: str, attempts: int) -> bool:
    return bool((await webhook_of(gw, item_id))["attempts"] == attempts)


async def _status(gw: RunningGateway, item_id: str, status: str) -> dict[str, Any] | None:
    webhook = await webhook_of(gw, item_id)
    return webhook if webhook["status"] == status else None


async def test_a_receiver_that_never_accepts_ends_with_the_delivery_failed(
    config: GatewayConfig, receiver: Receiver
) -> None:
    gw = await start_gateway(config)
    try:
        item_id = await escalate(gw, escalating(receiver, max_attempts=2))
        failed = await eventually(lambda: _status(gw, item_id, "failed"), what="the delivery given up")
    finally:
        await gw.close()
    assert failed["attempts"] == 2
    assert failed["last_error"] == "answered 500"
    assert len(receiver.deliveries) == 2


async def test_sidecars_sharing_the_outbox_deliver_each_entry_once(
    redis_server: RedisServer, upstream: Upstream, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    upstream.handler = scripted((200, {"result": 7}))
    config = gateway_config([{"name": "agent", "upstream": upstream.url}],
                            store={"backend": "redis", "url": redis_server.url})  # fmt: skip
    receiver.failing = False
    gateways = [await start_gateway(config) for _ in range(3)]
    try:
        items = [await escalate(gateways[n % 3], escalating(receiver)) for n in range(9)]
        for item_id in items:
            await eventually(lambda i=item_id: _status(gateways[0], i, "delivered"), what=f"{item_id} delivered")
    finally:
        for gw in gateways:
            await gw.close()
    assert sorted(receiver.ids()) == sorted({*receiver.ids()})  # no entry delivered twice
    assert len(receiver.ids()) == 9


async def test_the_dlq_stream_is_read_by_its_consumer_group(
    redis_server: RedisServer, upstream: Upstream, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    upstream.handler = scripted((200, {"result": 7}))
    config = gateway_config([{"name": "agent", "upstream": upstream.url}],
                            store={"backend": "redis", "url": redis_server.url})  # fmt: skip
    gw = await start_gateway(config)
    try:
        item_id = await escalate(gw, escalating(receiver))
        async with AdminClient(gw.admin_url, TOKEN) as admin:
            assert [i["id"] for i in (await admin.request("GET", "/dlq"))["escalations"]] == [item_id]
            await admin.request("POST", f"/dlq/{item_id}/resolve", body={"body": {"result": "fixed"}})
            assert (await admin.request("GET", f"/dlq/{item_id}"))["status"] == "resolved"
    finally:
        await gw.close()
    client = redis.Redis.from_url(redis_server.url)
    answer = client.xreadgroup(DLQ_GROUP, "external-tool", {"agw:dlq:stream": ">"}, count=10)
    events = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in answer[0][1]]
    assert [(e["event"], e["id"]) for e in events] == [
        ("escalation.created", item_id),
        ("escalation.resolved", item_id),
    ]
    assert json.loads(events[0]["item"])["reason"] == "response_invalid"
    client.close()
