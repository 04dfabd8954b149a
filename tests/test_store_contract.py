"""One behavioural contract for every store backend: the embedded SQLite and the shared Redis."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from gateway.admin.client import AdminClient
from gateway.config import RouteSpec
from gateway.store.base import ArtifactVersion, EscalationItem, HandoffRecord, Store
from gateway.store.sqlite import SQLiteStore
from tests.conftest import TOKEN, Upstream, contract, eventually, gateway_config, scripted


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        backend: Store = SQLiteStore(":memory:")
    else:
        from gateway.store.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        backend = RedisStore(url, prefix=f"test-{secrets.token_hex(4)}:")
    yield backend
    await backend.close()


def handoff(n: int, run: str = "r", category: str | None = None) -> HandoffRecord:
    return HandoffRecord(
        id=f"h{n}", run_id=run, step="s", attempt=1, source="a", target="b", method="POST", path="/",
        status=200 if category is None else 502, verdict="valid" if category is None else "response_invalid",
        trace_id="t", started_at=1000.0 + n, duration_ms=1.0, category=category,
        failure_mode=None if category is None else "information_withholding",
        violations=() if category is None else ({"pointer": "/x", "keyword": "required", "message": "m"},),
    )  # fmt: skip


async def test_routes(store: Store) -> None:
    await store.put_route(RouteSpec(name="b", upstream="http://b"))
    await store.put_route(RouteSpec(name="a", upstream="http://a"))
    await store.put_route(RouteSpec(name="a", upstream="http://a2"))
    assert [(r.name, r.upstream) for r in await store.list_routes()] == [("a", "http://a2"), ("b", "http://b")]
    assert await store.delete_route("a")
    assert not await store.delete_route("a")


async def test_versioned_documents(store: Store) -> None:
    assert [(await store.add_version("contract", i, {"n": n})).version for n, i in enumerate("aaba")] == [1, 2, 1, 3]
    assert (await store.add_version("policy", "a", {})).version == 1
    await store.set_active("contract", "a", 2)
    heads = await store.list_heads("contract")
    assert [(h.id, h.latest_version, h.active_version) for h in heads] == [("a", 3, 2), ("b", 1, None)]
    assert [d.document for d in await store.list_versions("contract", "a")] == [{"n": 0}, {"n": 1}, {"n": 3}]
    stored = await store.get_version("contract", "a", 2)
    assert stored is not None
    assert stored.document == {"n": 1}
    assert await store.get_version("contract", "a", 7) is None
    await store.set_active("contract", "a", None)
    assert (await store.list_heads("contract"))[0].active_version is None


async def test_active_documents_are_the_versions_in_force_in_one_call(store: Store) -> None:
    for doc_id, n in [("b", 0), ("a", 1), ("a", 2), ("c", 3), ("a", 4)]:
        await store.add_version("contract", doc_id, {"n": n})
    await store.add_version("policy", "a", {"policy": True})
    await store.set_active("contract", "a", 2)
    await store.set_active("contract", "b", 1)  # "c" has versions but none in force: left out
    await store.set_active("policy", "a", 1)
    active = await store.active_documents("contract")
    assert [(d.id, d.version, d.document) for d in active] == [("a", 2, {"n": 2}), ("b", 1, {"n": 0})]
    assert active[0] == await store.get_version("contract", "a", 2)
    assert [d.document for d in await store.active_documents("policy")] == [{"policy": True}]
    assert await store.active_documents("nothing") == []


async def test_audit_trail_runs_stats_and_retention(store: Store) -> None:
    await store.append_handoffs([handoff(1, "r1"), handoff(2, "r1", "inter-agent misalignment"), handoff(3, "r2")])
    await store.append_handoffs([handoff(4, "r1")])
    assert [r.id for r in await store.run_handoffs("r1")] == ["h1", "h2", "h4"]
    assert (await store.run_handoffs("r1"))[1] == handoff(2, "r1", "inter-agent misalignment")
    runs = await store.list_runs(10)
    assert [(r.run_id, r.handoffs, r.failures, r.first_at, r.last_at) for r in runs] == [
        ("r1", 3, 1, 1001.0, 1004.0), ("r2", 1, 0, 1003.0, 1003.0)
    ]  # fmt: skip
    counts = await store.failure_counts(0)
    assert [(c.route, c.category, c.mode, c.count) for c in counts] == [
        ("b", "inter-agent misalignment", "information_withholding", 1)
    ]
    assert await store.failure_counts(1002.5) == []
    await store.prune_handoffs(keep=2, older_than=0)
    assert [r.id for r in await store.run_handoffs("r1")] == ["h4"]
    await store.prune_handoffs(keep=10, older_than=1003.5)
    assert [r.id for r in await store.run_handoffs("r1")] == ["h4"]
    assert await store.run_handoffs("r2") == []


async def test_artifacts(store: Store) -> None:
    for version in (1.0, 2.0):
        await store.add_artifact_version(ArtifactVersion("r", "draft", version, None, 5.0))
    assert [a.version for a in await store.artifact_versions("r", "draft")] == [1.0, 2.0]
    assert await store.artifact_versions("r", "plan") == []


async def test_escalations(store: Store) -> None:
    item = EscalationItem(
        id="e1", created_at=1.0, status="pending", reason="timeout", route="b", method="POST", path="/",
        query="", request_headers={"X": "1"}, request_body=b"\x00{}", trace_id="t", run_id="r", attempts=2,
    )  # fmt: skip
    await store.add_escalation(item)
    await store.add_escalation(replace(item, id="e2", created_at=2.0, route="c"))
    assert await store.get_escalation("e1") == item
    assert [i.id for i in await store.list_escalations(status="pending", route=None, limit=10)] == ["e2", "e1"]
    assert [i.id for i in await store.list_escalations(status=None, route="b", limit=10)] == ["e1"]
    await store.replace_escalation(replace(item, status="resolved", resolution_status=200, resolution_body=b"ok"))
    assert (await store.count_escalations("pending"), await store.count_escalations("resolved")) == (1, 1)
    resolved = await store.get_escalation("e1")
    assert resolved is not None
    assert resolved.resolution_body == b"ok"
    assert await store.get_escalation("nope") is None


async def test_checkpoints(store: Store) -> None:
    assert await store.claim_checkpoint("k", "d1", now=100.0, ttl=60) is None
    in_flight = await store.claim_checkpoint("k", "d1", now=101.0, ttl=60)
    assert in_flight is not None
    assert in_flight.state == "in_flight"
    await store.release_checkpoint("k")
    assert await store.claim_checkpoint("k", "d1", now=102.0, ttl=60) is None
    import time

    await store.complete_checkpoint(
        "k", "d1", status=200, headers={"Content-Type": "application/json"}, body=b"{}", expires_at=time.time() + 60
    )
    await store.release_checkpoint("k")  # only in-flight claims are released
    done = await store.claim_checkpoint("k", "d1", now=time.time(), ttl=60)
    assert done is not None
    assert (done.state, done.status, done.body) == ("done", 200, b"{}")
    assert done.headers == {"Content-Type": "application/json"}


async def test_an_in_flight_claim_is_a_lease_only_its_owner_renews_or_releases(store: Store) -> None:
    import time

    now = time.time()
    assert await store.claim_checkpoint("k", "d", now=now, ttl=60, owner="a") is None
    assert not await store.renew_checkpoint("k", "b", expires_at=now + 600)
    assert await store.renew_checkpoint("k", "a", expires_at=now + 600)
    held = await store.claim_checkpoint("k", "d", now=now + 120, ttl=60, owner="b")  # past the first lease
    assert held is not None
    assert (held.state, held.owner) == ("in_flight", "a")
    assert held.expires_at == pytest.approx(now + 600)
    await store.release_checkpoint("k", "b")  # a call whose lease lapsed must not free another's claim
    assert await store.claim_checkpoint("k", "d", now=now + 130, ttl=60, owner="b") is not None
    await store.release_checkpoint("k", "a")
    assert await store.claim_checkpoint("k", "d", now=now + 140, ttl=60, owner="b") is None
    await store.complete_checkpoint("k", "d", status=200, headers={}, body=b"{}", expires_at=now + 60)
    assert not await store.renew_checkpoint("k", "b", expires_at=now + 900)  # a stored answer is no claim
    done = await store.claim_checkpoint("k", "d", now=now + 1, ttl=60)
    assert done is not None
    assert done.state == "done"
    assert done.expires_at == pytest.approx(now + 60)


async def test_an_expired_claim_can_be_claimed_again(store: Store) -> None:
    import time

    assert await store.claim_checkpoint("k", "d", now=time.time(), ttl=0.05, owner="dead") is None

    async def claimed_by_next() -> bool:  # Redis expires by its own clock, SQLite compares with ``now``: poll both
        return await store.claim_checkpoint("k", "d", now=time.time(), ttl=60, owner="next") is None

    await eventually(claimed_by_next, what="the expired claim released")
    held = await store.claim_checkpoint("k", "d", now=time.time(), ttl=60)
    assert held is not None
    assert held.owner == "next"


async def test_two_sidecars_share_runs_and_artifacts_through_redis(
    redis_url: str, make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    """The writer's sidecar records draft v2; the critic's sidecar, another process in production, sees it."""
    writer: Upstream = await make_upstream(scripted((200, {"version": 2})))
    critic: Upstream = await make_upstream(scripted((200, {"ok": True})))
    shared = {"backend": "redis", "url": redis_url, "prefix": f"fleet-{secrets.token_hex(4)}:"}
    writer_gw = await make_gateway(gateway_config([{"name": "writer", "upstream": writer.url}], store=shared))
    critic_gw = await make_gateway(gateway_config([{"name": "critic", "upstream": critic.url}], store=shared))
    produces = contract(id="writer.draft", route="writer", operation={"method": "POST", "path": "/draft"},
                        request={}, responses={"200": {"type": "object"}},
                        context={"produces": {"artifact": "draft", "version": "/version"}})  # fmt: skip
    consumes = contract(id="critic.review", route="critic", operation={"method": "POST", "path": "/review"},
                        request={"body": {"type": "object"}}, responses={},
                        context={"consumes": {"artifact": "draft", "version": "/version"}})  # fmt: skip
    async with AdminClient(writer_gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/writer.draft", body=produces)
    async with AdminClient(critic_gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/critic.review", body=consumes)
    headers = {"X-Run-Id": "fleet-run"}
    async with http.post(f"{writer_gw.data_url}/writer/draft", json={}, headers=headers) as resp:
        assert resp.status == 200
    async with http.post(f"{critic_gw.data_url}/critic/review", json={"version": 1}, headers=headers) as resp:
        assert resp.status == 409
    await critic_gw.state.audit.flush()  # what its background writer does within audit.flush_interval
    async with AdminClient(writer_gw.admin_url, TOKEN) as admin:
        run = await admin.request("GET", "/runs/fleet-run")  # both sidecars' records, one timeline
    assert [(h["target"], h["verdict"]) for h in run["handoffs"]] == [("writer", "valid"), ("critic", "stale_context")]
    assert critic.seen == []


async def test_a_change_made_through_one_sidecar_reaches_the_others(
    redis_url: str, make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:

    import redis.asyncio as aioredis

    prefix = f"feed-{secrets.token_hex(4)}:"
    shared = {"backend": "redis", "url": redis_url, "prefix": prefix}
    first = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], store=shared))
    second = await make_gateway(gateway_config([], store=shared))  # learns the route from the store
    probe = aioredis.from_url(redis_url)

    async def both_listen() -> bool:
        return dict(await probe.pubsub_numsub(f"{prefix}changes")).get(f"{prefix}changes".encode()) == 2

    await eventually(both_listen, what="both gateways listen on the change channel")
    await probe.aclose()
    async with AdminClient(first.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
        await admin.put_route("agent", {"upstream": upstream.url})
    await eventually(
        lambda: second.state.contracts.table.get("agent.tasks") and second.state.routes.table.get("agent"),
        what="the change reached the second sidecar",
    )
    async with http.post(f"{second.data_url}/agent/tasks", json={"bad": 1}) as resp:
        assert resp.status == 422  # enforced by the sidecar that was never told directly
