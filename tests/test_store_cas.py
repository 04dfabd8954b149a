"""Gateways sharing one store (a SQLite file, a redis-server) agree on it without relying on what each loaded.

Two bugs the end-to-end fleet test found (/work/notes/report-fleet-e2e.md):

- Replicas starting together on the same files each minted a version of them: "unchanged" was judged against the
  table each had loaded, before the other's write. The store now puts a document in force atomically unless the
  version in force has its content (``add_active_version``), and the registry adopts that version.
- A gateway stopping mid-webhook cancelled the attempt and left the delivery leased to itself for 30 s. Closing
  now lets attempts in flight finish, then releases what is still claimed (``release_webhooks``).

The stores of one test are separate connections or clients, as separate processes have; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.app import start_gateway
from gateway.config import GatewayConfig
from gateway.contracts.registry import ContractRegistry
from gateway.policies.outbox import SIGNATURE_HEADER, Outbox, verify
from gateway.store.base import EscalationItem, Store, WebhookDelivery
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SQLiteStore
from tests import test_outbox
from tests.conftest import PATIENCE, Upstream, contract, eventually, gateway_config
from tests.test_outbox import SECRET, escalate, escalating, webhook_of

store = test_outbox.store  # a SQLite file or a redis-server of the test's, for gateways started one after another
config = test_outbox.config  # route "agent" on that store, whose answers break the contract (escalated)

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens another store on one shared backing: a new connection to one SQLite file, or a new client of the
    session's redis-server under a prefix of this test's."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = str(tmp_path / "shared.db")

        def make() -> Store:
            return SQLiteStore(path)
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"cas-{uuid.uuid4().hex}:"

        def make() -> Store:
            return RedisStore(url, prefix=prefix)

    def opener() -> Store:
        opened.append(make())
        return opened[-1]

    yield opener
    for s in opened:
        await s.close()


async def loaded_registries(open_store: Opener) -> tuple[ContractRegistry, ContractRegistry]:
    """Two gateways' contract registries, both loaded before either registers anything."""
    first, second = ContractRegistry(open_store()), ContractRegistry(open_store())
    await first.load()
    await second.load()
    return first, second


async def stored_versions(registry: ContractRegistry, doc_id: str) -> list[int]:
    return [entry.version for entry in await registry.versions(doc_id)]


async def test_a_document_registered_by_two_gateways_that_loaded_before_either_is_stored_once(
    open_store: Opener,
) -> None:
    first, second = await loaded_registries(open_store)
    assert (await first.register(contract())).version == 1
    adopted = await second.register(contract())  # its table has no agent.tasks: only the store knows
    assert adopted.version == 1
    assert await stored_versions(first, "agent.tasks") == [1]
    assert second.active_version("agent.tasks") == 1
    served = second.table.get("agent.tasks")
    assert served is not None
    assert served.version == 1


async def test_two_gateways_registering_the_same_documents_at_once_mint_one_version_each_time(
    open_store: Opener,
) -> None:
    first, second = await loaded_registries(open_store)
    new = await asyncio.gather(first.register(contract()), second.register(contract()))
    assert [entry.version for entry in new] == [1, 1]
    changed = contract(description="a rollout both replicas apply")
    rolled = await asyncio.gather(first.register(changed), second.register(changed))
    assert [entry.version for entry in rolled] == [2, 2]
    assert await stored_versions(first, "agent.tasks") == [1, 2]
    assert [registry.active_version("agent.tasks") for registry in (first, second)] == [2, 2]


async def test_the_store_puts_a_document_in_force_unless_the_version_in_force_has_its_content(
    open_store: Opener,
) -> None:
    s = open_store()
    assert (await s.add_active_version("policy", "p", {"a": 1, "b": [True]})).version == 1
    same = await s.add_active_version("policy", "p", {"b": [True], "a": 1})  # key order is not content
    assert (same.version, dict(same.document)) == (1, {"a": 1, "b": [True]})
    assert (await s.add_active_version("policy", "p", {"a": 1.0, "b": [True]})).version == 2  # 1.0 is not 1
    assert (await s.add_version("policy", "p", {"a": 3})).version == 3  # stored, not in force
    assert (await s.add_active_version("policy", "p", {"a": 3})).version == 4  # only the one in force counts
    await s.set_active("policy", "p", None)
    assert (await s.add_active_version("policy", "p", {"a": 3})).version == 5  # nothing in force
    heads = await s.list_heads("policy")
    assert [(h.id, h.latest_version, h.active_version) for h in heads] == [("p", 5, 5)]


@dataclass
class HeldReceiver(test_outbox.Receiver):
    """A webhook receiver that holds the first delivery until ``answer`` is set, then answers 204 to all."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answer: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def held(aiohttp_server: Any) -> AsyncIterator[HeldReceiver]:
    hook = HeldReceiver(failing=False)

    async def receive(request: web.Request) -> web.Response:
        hook.deliveries.append((await request.read(), dict(request.headers)))
        hook.arrived.set()
        await hook.answer.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    hook.url = str((await aiohttp_server(app)).make_url("/hook"))
    yield hook
    hook.answer.set()  # a held request must not keep the server's shutdown waiting


async def escalated(s: Store, url: str) -> WebhookDelivery:
    """An escalation with its webhook to ``url`` in the outbox, due now."""
    now = time.time()
    item = EscalationItem(
        id=f"esc_{uuid.uuid4().hex[:16]}", created_at=now, status="pending", reason="response_invalid",
        route="agent", method="POST", path="/tasks", query="", request_headers={}, request_body=b"{}",
        trace_id="0" * 32, run_id="run-1", attempts=1,
    )  # fmt: skip
    delivery = WebhookDelivery(
        id="msg_" + item.id, item_id=item.id, url=url, body=b'{"event": "escalation.created"}', created_at=now,
        next_at=now, give_up_at=now + 3600, max_attempts=5,
    )  # fmt: skip
    await s.add_escalation(item, delivery)
    return delivery


async def test_an_attempt_in_flight_when_its_gateway_stops_finishes_and_its_outcome_is_stored(
    open_store: Opener, held: HeldReceiver
) -> None:
    s = open_store()
    delivery = await escalated(s, held.url)
    async with aiohttp.ClientSession() as session:
        outbox = Outbox(s, session, environ={}, close_seconds=PATIENCE)
        outbox.start()
        await asyncio.wait_for(held.arrived.wait(), PATIENCE)
        closing = asyncio.create_task(outbox.close())
        await asyncio.sleep(0)  # the close has begun (its first step ran) before the receiver answers
        held.answer.set()
        await asyncio.wait_for(closing, PATIENCE)
    stored = await s.webhook_delivery(delivery.item_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("delivered", 1)
    assert len(held.deliveries) == 1


async def test_an_attempt_cut_short_by_the_stop_is_released_to_another_gateway_at_once(
    open_store: Opener, held: HeldReceiver
) -> None:
    first_store, second_store = open_store(), open_store()
    delivery = await escalated(first_store, held.url)
    async with aiohttp.ClientSession() as session:
        first = Outbox(first_store, session, environ={}, close_seconds=0.0)
        first.start()
        await asyncio.wait_for(held.arrived.wait(), PATIENCE)  # held: it cannot finish
        await first.close()
        held.answer.set()
        second = Outbox(second_store, session, environ={})
        assert await second.deliver_due() == 1  # the lease (30 s) was released, not waited out
    stored = await second_store.webhook_delivery(delivery.item_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("delivered", 1)  # the cut attempt's outcome is unknown: not counted
    assert held.ids() == [delivery.id, delivery.id]


async def test_a_webhook_whose_gateway_stops_mid_attempt_is_delivered_by_the_next_gateway(
    config: GatewayConfig, held: HeldReceiver
) -> None:
    first = await start_gateway(config)
    try:
        item_id = await escalate(first, escalating(held))
        await asyncio.wait_for(held.arrived.wait(), PATIENCE)
        assert first.state.escalations.outbox is not None
        first.state.escalations.outbox.close_seconds = 0.0  # the attempt is held: cut it at once
    finally:
        await first.close()
    held.answer.set()
    second = await start_gateway(config)
    try:
        delivered = await eventually(
            lambda: _delivered(second, item_id), what="the next gateway delivering (a delivery left leased?)"
        )
    finally:
        await second.close()
    assert delivered["attempts"] == 1
    assert len(held.deliveries) == 2
    assert len(set(held.ids())) == 1
    body, headers = held.deliveries[-1]
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)


async def _delivered(gw: Any, item_id: str) -> dict[str, Any] | None:
    webhook = await webhook_of(gw, item_id)
    return webhook if webhook["status"] == "delivered" else None


async def test_gateways_starting_together_on_the_same_contract_files_serve_one_version(
    store: dict[str, str], upstream: Upstream, tmp_path: Path
) -> None:
    """On one SQLite file nothing announces changes: the replicas of the report served v2 and v1. On Redis this
    is also the regression test of a hang: closing one of two gateways sharing a Redis waited forever on a change
    feed whose cancellation redis-py had swallowed."""
    directory = tmp_path / "contracts"
    directory.mkdir()
    (directory / "tasks.yaml").write_text(yaml.safe_dump(contract()))
    settings = gateway_config(
        [{"name": "agent", "upstream": upstream.url}], store=store, contract_dirs=[str(directory)]
    )
    gateways = await asyncio.gather(start_gateway(settings), start_gateway(settings))
    try:
        served = [gw.state.contracts.active_version("agent.tasks") for gw in gateways]
        versions = await gateways[0].state.contracts.versions("agent.tasks")
    finally:
        for gw in gateways:
            await gw.close()
    assert served == [1, 1]
    assert [entry.version for entry in versions] == [1]
