"""Traces, the handoff audit trail, run timelines, stale context, failure stats, metrics and logs."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.observability.logs import ACCESS_LOGGER, JsonFormatter
from tests.conftest import TOKEN, Upstream, contract, gateway_config

ORCHESTRATOR_TRACE = "0af7651916cd43dd8448eb211c80319c"
ORCHESTRATOR_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{ORCHESTRATOR_TRACE}-{ORCHESTRATOR_SPAN}-01"

DRAFT = {
    "type": "object",
    "required": ["version", "text"],
    "properties": {"version": {"type": "integer"}, "text": {"type": "string"}},
}


async def three_agents(make_gateway: Any, make_upstream: Any) -> tuple[RunningGateway, dict[str, Upstream]]:
    """writer → editor → critic, each behind the gateway with a contract; the editor drops a field."""

    async def writer(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"version": body.get("revision", 1), "text": "a first draft"})

    async def editor(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"version": body["version"]})  # malformed: "text" is missing

    async def critic(request: web.Request) -> web.Response:
        return web.json_response({"verdict": "approve"})

    agents = {name: await make_upstream(handler) for name, handler in
              (("writer", writer), ("editor", editor), ("critic", critic))}  # fmt: skip
    gw: RunningGateway = await make_gateway(
        gateway_config([{"name": name, "upstream": up.url} for name, up in agents.items()])
    )
    documents = [
        contract(id="writer.draft", route="writer", operation={"method": "POST", "path": "/draft"},
                 request={}, responses={"200": DRAFT},
                 context={"produces": {"artifact": "draft", "version": "/version"}}),
        contract(id="editor.edit", route="editor", operation={"method": "POST", "path": "/edit"},
                 request={"body": DRAFT}, responses={"200": DRAFT}),
        contract(id="critic.review", route="critic", operation={"method": "POST", "path": "/review"},
                 request={"body": DRAFT}, responses={},
                 context={"consumes": {"artifact": "draft", "version": "/version"}}),
    ]  # fmt: skip
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("POST", "/contracts", body={"contracts": documents})
    return gw, agents


async def call(
    http: aiohttp.ClientSession, gw: RunningGateway, source: str, target: str, path: str, body: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Run-Id": "run-42", "X-Agent-Name": source, "traceparent": TRACEPARENT}
    async with http.post(f"{gw.data_url}/{target}{path}", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def tree(spans: list[ReadableSpan]) -> list[tuple[str, Any, Any, list[str]]]:
    """(server span name, status, verdict, [client span names]) per handoff, in start order."""
    servers = sorted((s for s in spans if s.kind == SpanKind.SERVER), key=lambda s: s.start_time or 0)
    result = []
    for server in servers:
        assert server.parent is not None
        assert format(server.parent.span_id, "016x") == ORCHESTRATOR_SPAN
        assert format(server.context.trace_id, "032x") == ORCHESTRATOR_TRACE
        children = [
            c.name
            for c in spans
            if c.kind == SpanKind.CLIENT and c.parent and c.parent.span_id == server.context.span_id
        ]
        attributes = server.attributes or {}
        verdict = attributes.get("agent_gateway.contract.verdict")
        result.append((server.name, attributes.get("http.response.status_code"), verdict, children))
    return result


async def test_three_agent_run_span_tree_and_timeline_name_the_entry_point(
    make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    gw, agents = await three_agents(make_gateway, make_upstream)
    status1, draft_v1 = await call(http, gw, "orchestrator", "writer", "/draft", {})
    status2, _ = await call(http, gw, "writer", "editor", "/edit", draft_v1)  # editor's output is malformed
    status3, _ = await call(http, gw, "orchestrator", "writer", "/draft", {"revision": 2})
    status4, problem = await call(http, gw, "editor", "critic", "/review", draft_v1)  # stale: v2 exists
    assert (status1, status2, status3, status4) == (200, 502, 200, 409)
    assert problem["type"].endswith("/stale_context")
    assert problem["violations"] == [
        {"pointer": "/version", "keyword": "staleContext",
         "message": "builds on draft version 1, but version 2 was already produced in run run-42"}
    ]  # fmt: skip
    assert agents["critic"].seen == []

    assert tree(list(spans.get_finished_spans())) == [
        ("POST /writer/draft", 200, "valid", ["POST"]),
        ("POST /editor/edit", 502, "response_invalid", ["POST"]),
        ("POST /writer/draft", 200, "valid", ["POST"]),
        ("POST /critic/review", 409, "stale_context", []),
    ]
    client = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT)
    assert client.attributes is not None
    assert client.attributes["agent_gateway.run.id"] == "run-42"

    async with AdminClient(gw.admin_url, TOKEN) as admin:
        run = await admin.request("GET", "/runs/run-42")
    handoffs = run["handoffs"]
    assert [(h["source"], h["target"], h["status"], h["verdict"], h["category"]) for h in handoffs] == [
        ("orchestrator", "writer", 200, "valid", None),
        ("writer", "editor", 502, "response_invalid", "inter-agent misalignment"),
        ("orchestrator", "writer", 200, "valid", None),
        ("editor", "critic", 409, "stale_context", "inter-agent misalignment"),
    ]
    assert run["entry_point"]["id"] == handoffs[1]["id"]
    assert run["entry_point"]["failure_mode"] == "information_withholding"
    assert run["entry_point"]["violations"] == [
        {"pointer": "", "keyword": "required", "message": '"text" is a required property', "direction": "response"}
    ]
    assert run["downstream"] == [handoffs[3]["id"]]
    assert [h["contract_version"] for h in handoffs] == [1, 1, 1, 1]
    assert all(h["trace_id"] == ORCHESTRATOR_TRACE for h in handoffs)
    sent = agents["editor"].seen[0].body
    assert handoffs[1]["request_sha256"] == hashlib.sha256(sent).hexdigest()
    assert handoffs[1]["request_bytes"] == len(sent)
    assert handoffs[0]["upstream_ms"] is not None
    assert handoffs[0]["duration_ms"] >= handoffs[0]["upstream_ms"]


async def test_run_id_is_generated_returned_and_propagated(
    gateway: RunningGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.data_url}/agent/x") as resp:
        run_id = resp.headers["X-Run-Id"]
    assert len(run_id) == 16
    seen = upstream.seen[0].headers
    assert seen["X-Run-Id"] == run_id
    assert f"run.id={run_id}" in seen["baggage"]
    async with http.get(f"{gateway.data_url}/agent/x", headers={"baggage": "run.id=from-baggage,k=v"}) as resp:
        assert resp.headers["X-Run-Id"] == "from-baggage"


async def test_payloads_kept_with_redaction_when_enabled(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(
        gateway_config(
            [{"name": "agent", "upstream": upstream.url}],
            audit={"payloads": True, "redact": ["/credentials/token", "/tags/0"]},
        )
    )
    schema = {"type": "object"}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request(
            "PUT", "/contracts/agent.tasks", body=contract(request={"body": schema}, responses={"200": schema})
        )
        body = {"task": "t", "credentials": {"token": "s3cret", "user": "ann"}, "tags": ["pii", "ok"]}
        async with http.post(f"{gw.data_url}/agent/tasks", json=body, headers={"X-Run-Id": "r1"}) as resp:
            assert resp.status == 200
        run = await admin.request("GET", "/runs/r1")
    record = run["handoffs"][0]
    expected = {"task": "t", "credentials": {"token": "[redacted]", "user": "ann"}, "tags": ["[redacted]", "ok"]}
    assert record["request_payload"] == expected
    assert record["response_payload"] == expected  # the echo agent answered with the same document
    assert "s3cret" not in orjson.dumps(run).decode()


async def test_retention_keeps_the_newest_records(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(
        gateway_config([{"name": "agent", "upstream": upstream.url}], audit={"max_records": 3, "prune_interval": 0})
    )
    for n in range(6):
        async with http.get(f"{gw.data_url}/agent/x", headers={"X-Run-Id": f"r{n}"}) as resp:
            assert resp.status == 200
    await gw.state.audit.flush()
    assert [r.run_id for r in await gw.state.store.list_runs(10)] == ["r5", "r4", "r3"]


async def test_failure_stats_and_metrics(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
    for body in ({"task": "t", "priority": 1}, {"task": 1}, {}):
        async with http.post(f"{gateway.data_url}/agent/tasks", json=body) as resp:
            await resp.read()
    stats = await admin.request("GET", "/stats/failures?window=60")
    assert stats["total"] == 2
    assert stats["failures"] == [
        {"route": "agent", "category": "specification", "mode": "disobey_task_specification", "count": 2}
    ]
    async with http.get(f"{gateway.admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        text = await resp.text()
    assert (
        'agent_gateway_requests_total{operation="agent.tasks",route="agent",status="422",verdict="request_invalid"} 2.0'
        in text
    )
    assert (
        'agent_gateway_requests_total{operation="agent.tasks",route="agent",status="200",verdict="unchecked"} 1.0'
        in text  # the request was checked, and no schema covers the answer: ``responses={}``
    )
    assert 'agent_gateway_overhead_seconds_count{route="agent"} 1.0' in text
    assert 'agent_gateway_in_flight_requests{route="agent"} 0.0' in text
    async with http.get(f"{gateway.admin_url}/metrics") as resp:
        assert resp.status == 401


async def test_one_structured_log_line_per_request(
    gateway: RunningGateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=ACCESS_LOGGER):  # a success logs at DEBUG (see test_access_log)
        async with http.get(f"{gateway.data_url}/agent/x", headers={"X-Run-Id": "log-run"}) as resp:
            assert resp.status == 200
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    line = orjson.loads(JsonFormatter().format(record))
    assert line["run_id"] == "log-run"
    http_fields = ("http.request.method", "url.path", "http.response.status_code")
    assert [line[k] for k in http_fields] == ["GET", "/agent/x", 200]
    assert line["route"] == "agent"
    assert line["verdict"] == "unchecked"
    assert len(line["trace_id"]) == 32
    assert len(line["span_id"]) == 16
    assert line["level"] == "DEBUG"


async def test_audit_survives_restart(tmp_path: Any, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    from gateway.app import start_gateway

    config = gateway_config([{"name": "agent", "upstream": upstream.url}], store={"path": str(tmp_path / "a.db")})
    first = await start_gateway(config)
    async with http.get(f"{first.data_url}/agent/x", headers={"X-Run-Id": "durable"}) as resp:
        assert resp.status == 200
    await first.close()
    second = await start_gateway(config)
    try:
        assert [r.target for r in await second.state.store.run_handoffs("durable")] == ["agent"]
    finally:
        await second.close()
