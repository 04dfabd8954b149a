"""Resilience policies against real flaky agents on loopback: retries, breakers, escalation, checkpoints,
fallbacks, deadlines — and the admin API that manages them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway, start_gateway
from gateway.outcomes import Verdict
from gateway.policies.outbox import verify
from tests.conftest import TOKEN, Upstream, contract, eventually, free_port, gateway_config, scripted

FAST_RETRY = {"max_attempts": 3, "initial_backoff": 0.001, "max_backoff": 0.002}
VALID = {"result": "ok"}


def policy(**overrides: Any) -> dict[str, Any]:
    return {"id": "agent-policy", "attach": {"route": "agent"}, **overrides}


async def setup(gateway: RunningGateway, docs: dict[str, Any], pol: dict[str, Any] | None) -> None:
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(**docs))
        if pol is not None:
            await admin.request("PUT", f"/policies/{pol['id']}", body=pol)


async def post(
    http: aiohttp.ClientSession, gw: RunningGateway, body: Any = None, **headers: str
) -> aiohttp.ClientResponse:
    resp = await http.post(f"{gw.data_url}/agent/tasks", json=body or {"task": "t", "priority": 1}, headers=headers)
    await resp.read()
    return resp


# -- retries ---------------------------------------------------------------------------------------------


async def test_retry_turns_a_malformed_answer_into_a_valid_one(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession,
    spans: InMemorySpanExporter,
) -> None:  # fmt: skip
    upstream.handler = scripted((200, b'{"result": '), (200, VALID))
    await setup(gateway, {"failure_modes": {"response_invalid": "retry"}}, policy(retry=FAST_RETRY))
    resp = await post(http, gateway, **{"Idempotency-Key": "k1", "X-Run-Id": "retry-run"})
    assert resp.status == 200
    assert await resp.json() == VALID
    assert len(upstream.seen) == 2
    assert resp.headers["X-Gateway-Attempts"] == "2"  # the caller sees its request took two agent calls
    clients = sorted(
        (s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    assert [s.attributes.get("http.request.resend_count") for s in clients if s.attributes] == [None, 1]
    run = await admin.request("GET", "/runs/retry-run")
    assert [(h["attempt"], h["verdict"]) for h in run["handoffs"]] == [(1, "response_invalid"), (2, "valid")]
    assert run["handoffs"][0]["violations"][0]["keyword"] == "json"
    async with http.get(f"{gateway.admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as m:
        assert 'agent_gateway_retries_total{reason="response_invalid",route="agent"} 1.0' in await m.text()


async def test_no_retry_for_a_post_without_idempotency_key(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((200, b"garbage"), (200, VALID))
    await setup(gateway, {"failure_modes": {"response_invalid": "retry"}}, policy(retry=FAST_RETRY))
    resp = await post(http, gateway)
    assert resp.status == 502
    assert len(upstream.seen) == 1


async def test_retry_on_listed_5xx_then_relay_the_last_answer_as_is(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((503, {"error": "busy"}))
    await setup(
        gateway, {"operation": {"method": "POST", "path": "/tasks", "idempotent": True}}, policy(retry=FAST_RETRY)
    )
    resp = await post(http, gateway)
    assert resp.status == 503
    assert await resp.json() == {"error": "busy"}  # exhausted + reject: the agent's own answer
    assert len(upstream.seen) == 3


async def test_retry_budget_stops_a_retry_storm(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((503, {"error": "down"}))
    retry = {**FAST_RETRY, "budget": {"ratio": 0.0, "min_retries": 1, "window_seconds": 60}}
    await setup(gateway, {"operation": {"method": "POST", "path": "/tasks", "idempotent": True}}, policy(retry=retry))
    for _ in range(3):
        assert (await post(http, gateway)).status == 503
    assert len(upstream.seen) == 4  # 3 requests + the single retry the budget allowed


# -- circuit breaker -------------------------------------------------------------------------------------


async def test_breaker_opens_on_a_dead_agent_fails_fast_and_is_manageable(
    make_gateway: Any, http: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(gateway_config([{"name": "agent", "upstream": f"http://127.0.0.1:{free_port()}"}]))
    breaker = {"consecutive_failures": 2, "wait_in_open_seconds": 60, "minimum_calls": 100}
    await setup(gw, {}, policy(breaker=breaker))
    statuses = [(await post(http, gw)).status for _ in range(2)]
    resp = await post(http, gw)
    problem = await resp.json(content_type=None)
    assert statuses == [502, 502]
    assert resp.status == 503
    assert problem["type"].endswith(f"/{Verdict.BREAKER_OPEN}")
    assert problem["breaker"] == "route:agent"
    assert resp.headers["Retry-After"] == "60"
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        assert (await admin.request("GET", "/breakers"))["breakers"][0]["state"] == "open"
        assert (await admin.request("POST", "/breakers/route:agent/force-close"))["state"] == "forced_closed"
        assert (await post(http, gw)).status == 502  # calls go through again (and fail: the agent is dead)
        assert (await admin.request("POST", "/breakers/route:agent/reset"))["state"] == "closed"
        await admin.request("POST", "/breakers/route:agent/force-open")
        assert (await post(http, gw)).status == 503
    async with http.get(f"{gw.admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as m:
        assert 'agent_gateway_breaker_state{breaker="route:agent",state="forced_open"} 1.0' in await m.text()


async def test_breaker_open_can_take_the_fallback(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((200, b"not json"))
    pol = policy(breaker={"consecutive_failures": 1}, fallback={"response": {"body": {"result": "cached"}}},
                 failure_modes={"breaker_open": "fallback"})  # fmt: skip
    await setup(gateway, {}, pol)
    assert (await post(http, gateway)).status == 502
    resp = await post(http, gateway)
    assert resp.status == 200
    assert await resp.json() == {"result": "cached"}
    assert resp.headers["X-Fallback"] == "static"
    assert len(upstream.seen) == 1


# -- fallbacks and deadlines -----------------------------------------------------------------------------


async def test_invalid_fallback_is_refused_not_passed_on(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((200, {"wrong": True}))
    pol = policy(fallback={"response": {"body": {"result": 42}}})
    await setup(gateway, {"failure_modes": {"response_invalid": "fallback"}}, pol)
    resp = await post(http, gateway)
    problem = await resp.json(content_type=None)
    assert resp.status == 502
    assert problem["type"].endswith("/fallback-invalid")
    assert problem["violations"][0]["pointer"] == "/result"


async def test_fallback_route(make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession) -> None:
    primary, backup = await make_upstream(scripted((200, b"oops"))), await make_upstream(scripted((200, VALID)))
    gw = await make_gateway(gateway_config([{"name": "agent", "upstream": primary.url},
                                            {"name": "backup", "upstream": backup.url}]))  # fmt: skip
    await setup(gw, {"failure_modes": {"response_invalid": "fallback"}}, policy(fallback={"route": "backup"}))
    resp = await post(http, gw)
    assert resp.status == 200
    assert resp.headers["X-Fallback"] == "route:backup"
    assert [s.path for s in backup.seen] == ["/tasks"]


async def test_deadline_from_caller_bounds_the_call_and_is_propagated(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response(VALID)

    upstream.handler = slow
    await setup(gateway, {}, policy(timeouts={"total": 30}))
    resp = await post(http, gateway, **{"X-Request-Timeout-Ms": "150"})
    assert resp.status == 504
    assert 0 < int(upstream.seen[0].headers["X-Request-Timeout-Ms"]) <= 150


# -- escalation ------------------------------------------------------------------------------------------


@pytest.fixture
async def webhook(aiohttp_server: Any) -> tuple[str, list[tuple[bytes, str]]]:
    received: list[tuple[bytes, str]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-Agent-Gateway-Signature", "")))
        return web.Response(status=500 if len(received) == 1 else 204)  # the first delivery fails

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook")), received


@dataclass
class Escalated:
    """A handoff escalated with a webhook configured: the agent answered ``{"result": 7}``, breaking the contract."""

    gw: RunningGateway
    upstream: Upstream
    admin: AdminClient
    accepted: dict[str, Any]
    deliveries: list[tuple[bytes, str]]

    @property
    def item_id(self) -> str:
        return str(self.accepted["escalation_id"])


STEP = {"Idempotency-Key": "step-3", "X-Run-Id": "esc-run"}


@pytest.fixture
async def escalated(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession,
    webhook: tuple[str, list[tuple[bytes, str]]], monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Escalated]:  # fmt: skip
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    gw = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}]))
    upstream.handler = scripted((200, {"result": 7}))
    pol = policy(escalation={"respond_status": 202, "webhook": {"url": webhook[0], "secret_env": "HOOK_SECRET"}})
    await setup(gw, {"failure_modes": {"response_invalid": "escalate"}}, pol)
    resp = await post(http, gw, **STEP)
    assert resp.status == 202
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        yield Escalated(gw, upstream, admin, await resp.json(), webhook[1])


async def test_escalation_answers_202_with_a_pending_outcome(escalated: Escalated, http: aiohttp.ClientSession) -> None:
    assert escalated.accepted["status"] == "pending"
    async with http.get(escalated.gw.data_url + escalated.accepted["outcome_url"]) as outcome:
        assert outcome.status == 202


async def test_escalated_item_holds_what_a_person_needs_to_judge_it(escalated: Escalated) -> None:
    item = await escalated.admin.request("GET", f"/dlq/{escalated.item_id}")
    assert item["reason"] == "response_invalid"
    assert item["contract"] == "agent.tasks"
    assert item["upstream"] == {"json": {"result": 7}}
    assert item["violations"][0]["pointer"] == "/result"
    assert item["run_id"] == "esc-run"
    assert item["attempts"] == 1


async def test_a_correction_breaking_the_contract_is_refused_and_the_item_stays_pending(escalated: Escalated) -> None:
    admin = escalated.admin
    with pytest.raises(AdminAPIError) as refused:
        await admin.request("POST", f"/dlq/{escalated.item_id}/resolve", body={"body": {"result": 8}})
    assert refused.value.status == 422
    assert refused.value.problem["errors"][0]["pointer"] == "/result"
    assert (await admin.request("GET", f"/dlq/{escalated.item_id}"))["status"] == "pending"


async def test_a_resolved_item_answers_its_outcome_and_is_closed(
    escalated: Escalated, http: aiohttp.ClientSession
) -> None:
    admin = escalated.admin
    resolved = await admin.request("POST", f"/dlq/{escalated.item_id}/resolve", body={"body": {"result": "fixed"}})
    assert resolved["status"] == "resolved"
    with pytest.raises(AdminAPIError) as again:
        await admin.request("POST", f"/dlq/{escalated.item_id}/discard", body={})
    assert again.value.status == 409
    async with http.get(escalated.gw.data_url + escalated.accepted["outcome_url"]) as outcome:
        assert outcome.status == 200
        assert await outcome.json() == {"result": "fixed"}


async def test_the_rerun_step_resumes_from_the_correction_without_calling_the_agent(
    escalated: Escalated, http: aiohttp.ClientSession
) -> None:
    await escalated.admin.request("POST", f"/dlq/{escalated.item_id}/resolve", body={"body": {"result": "fixed"}})
    resumed = await post(http, escalated.gw, **STEP)  # the pipeline re-runs the step
    assert resumed.status == 200
    assert resumed.headers["X-Checkpoint"] == "hit"
    assert await resumed.json() == {"result": "fixed"}
    assert len(escalated.upstream.seen) == 1  # the agent was not called again


async def test_the_escalation_webhook_is_signed_and_retried(escalated: Escalated) -> None:
    await eventually(lambda: len(escalated.deliveries) == 2, what="the webhook's second delivery")
    assert len(escalated.deliveries) == 2  # retried after the first delivery failed
    body, signature = escalated.deliveries[1]
    assert verify(b"s3cret", signature, body)
    assert not verify(b"wrong", signature, body)
    assert json.loads(body)["escalation"]["id"] == escalated.item_id


async def test_escalation_503_replay_and_durability_across_restart(
    tmp_path: Path, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(scripted((500, {"error": "boom"}), (200, VALID)))
    config = gateway_config([{"name": "agent", "upstream": upstream.url}], store={"path": str(tmp_path / "g.db")})
    first = await start_gateway(config)
    await setup(first, {"failure_modes": {"upstream_error": "escalate"}},
                policy(retry={**FAST_RETRY, "statuses": [500], "max_attempts": 1}))  # fmt: skip
    resp = await post(http, first)
    problem = await resp.json(content_type=None)
    assert resp.status == 503
    assert problem["type"].endswith("/escalated")
    await first.close()

    second = await start_gateway(config)
    try:
        async with AdminClient(second.admin_url, TOKEN) as admin:
            pending = await admin.request("GET", "/dlq?status=pending")
            assert [i["id"] for i in pending["escalations"]] == [problem["escalation_id"]]
            replayed = await admin.request("POST", f"/dlq/{problem['escalation_id']}/replay")
        assert replayed["status"] == "replayed"
        assert replayed["resolution"] == {"json": VALID}
        assert second.state.escalations.pending_count() == 0
    finally:
        await second.close()


# -- checkpoints -----------------------------------------------------------------------------------------


async def test_checkpoint_replay_after_a_crash_and_idempotency_conflicts(
    tmp_path: Path, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def agent(request: web.Request) -> web.Response:
        if (await request.json()).get("slow"):
            await release.wait()
        return web.json_response(VALID)

    upstream = await make_upstream(agent)
    config = gateway_config([{"name": "agent", "upstream": upstream.url}], store={"path": str(tmp_path / "c.db")})
    gw = await start_gateway(config)
    await setup(gw, {"request": {}}, None)
    first = await post(http, gw, {"n": 1}, **{"Idempotency-Key": "a"})
    assert first.status == 200
    assert first.headers["X-Checkpoint"] == "stored"
    await gw.close()  # the pipeline "crashes"; the gateway restarts

    gw = await start_gateway(config)
    try:
        again = await post(http, gw, {"n": 1}, **{"Idempotency-Key": "a"})
        assert again.status == 200
        assert again.headers["X-Checkpoint"] == "hit"
        assert len(upstream.seen) == 1
        reused = await post(http, gw, {"n": 2}, **{"Idempotency-Key": "a"})
        assert reused.status == 422
        assert (await reused.json(content_type=None))["type"].endswith("/idempotency-key-reused")
        slow = asyncio.create_task(post(http, gw, {"slow": True}, **{"Idempotency-Key": "b"}))
        await eventually(lambda: len(upstream.seen) == 2, what="the slow request reached the agent")
        duplicate = await post(http, gw, {"slow": True}, **{"Idempotency-Key": "b"})
        assert duplicate.status == 409
        release.set()
        assert (await slow).status == 200
        stored = await gw.state.store.claim_checkpoint("x", "y", now=0, ttl=1)
        assert stored is None
        digest = hashlib.sha256(b'{"n": 1}').hexdigest()
        assert (await gw.state.store.claim_checkpoint("agent POST /tasks key:a", digest, now=0, ttl=1)) is not None
    finally:
        await gw.close()


# -- policy documents ------------------------------------------------------------------------------------


async def test_policy_documents_are_versioned_and_checked(gateway: RunningGateway, admin: AdminClient) -> None:
    assert (await admin.request("PUT", "/policies/p1", body=policy(id="p1", retry=FAST_RETRY)))["version"] == 1
    assert (await admin.request("PUT", "/policies/p1", body=policy(id="p1")))["version"] == 2
    assert gateway.state.policies.table.lookup("agent", None).retry is None
    await admin.request("POST", "/policies/p1/activate", body={"version": 1})
    assert gateway.state.policies.table.lookup("agent", None).retry is not None
    with pytest.raises(AdminAPIError) as bad:
        await admin.request("PUT", "/policies/p2", body=policy(id="p2", retry={"max_attempts": 0}))
    assert bad.value.status == 400
    assert bad.value.problem["errors"][0]["pointer"] == "/retry/max_attempts"
    with pytest.raises(AdminAPIError) as taken:
        await admin.request("PUT", "/policies/p3", body=policy(id="p3"))
    assert taken.value.status == 409
    assert "already has policy 'p1'" in taken.value.problem["detail"]
    await admin.request("PUT", "/policies/p4", body={"id": "p4", "attach": {"contract": "agent.tasks"}})
    assert gateway.state.policies.table.lookup("agent", "agent.tasks").id == "p4"
    assert gateway.state.policies.table.lookup("agent", "other").id == "p1"


async def test_an_escalated_answer_is_never_kept_as_a_checkpoint(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((200, {"result": 7}), (200, VALID))
    await setup(
        gateway, {"failure_modes": {"response_invalid": "escalate"}}, policy(escalation={"respond_status": 202})
    )
    first = await post(http, gateway, **{"Idempotency-Key": "k"})
    assert first.status == 202
    assert "X-Checkpoint" not in first.headers
    again = await post(http, gateway, **{"Idempotency-Key": "k"})  # not resolved yet: the agent is asked again
    assert again.status == 200
    assert await again.json() == VALID
    assert again.headers["X-Checkpoint"] == "stored"
    assert len(upstream.seen) == 2


async def test_stale_context_can_be_escalated_instead_of_refused(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((200, {"version": 2}))
    producer = contract(id="agent.draft", operation={"method": "POST", "path": "/draft"}, request={},
                        responses={"200": {"type": "object"}},
                        context={"produces": {"artifact": "draft", "version": "/version"}})  # fmt: skip
    consumer = contract(request={"body": {"type": "object"}}, responses={},
                        context={"consumes": {"artifact": "draft", "version": "/version"}},
                        failure_modes={"stale_context": "escalate"})  # fmt: skip
    await admin.request("POST", "/contracts", body={"contracts": [producer, consumer]})
    await admin.request("PUT", "/policies/p", body=policy(id="p", escalation={"respond_status": 202}))
    async with http.post(f"{gateway.data_url}/agent/draft", json={}, headers={"X-Run-Id": "r"}) as resp:
        assert resp.status == 200
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"version": 1}, headers={"X-Run-Id": "r"}) as resp:
        accepted = await resp.json()
    assert resp.status == 202
    item = await admin.request("GET", f"/dlq/{accepted['escalation_id']}")
    assert item["reason"] == "stale_context"
    assert item["violations"][0]["keyword"] == "staleContext"
    assert item["attempts"] == 0
    assert item["upstream"] is None
    assert len(upstream.seen) == 1  # the stale request never reached the consumer agent


async def test_a_bodiless_get_stays_bodiless_when_it_may_be_retried(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    upstream.handler = scripted((503, {"busy": True}), (200, VALID))
    await admin.request("PUT", "/policies/p", body=policy(id="p", retry=FAST_RETRY))
    async with http.get(f"{gateway.data_url}/agent/items") as resp:
        assert resp.status == 200
    assert len(upstream.seen) == 2  # retried: GET is idempotent
    assert all("Content-Length" not in seen.headers and seen.body == b"" for seen in upstream.seen)
