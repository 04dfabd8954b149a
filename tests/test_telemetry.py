"""Trace context: one trace id across caller, gateway spans, the upstream agent and problem documents."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.observability.telemetry import build_tracer_provider
from tests.conftest import Upstream, contract

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


async def test_spans_join_the_callers_trace_and_propagate_upstream(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession,
    spans: InMemorySpanExporter,
) -> None:  # fmt: skip
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
    headers = {"traceparent": TRACEPARENT, "X-Agent-Name": "planner"}
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}, headers=headers) as r:
        assert r.status == 200
    finished = {span.kind: span for span in spans.get_finished_spans()}
    server, client = finished[SpanKind.SERVER], finished[SpanKind.CLIENT]
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert server.name == "POST agent /tasks"
    assert server.attributes is not None
    assert server.attributes["contract.id"] == "agent.tasks"
    assert server.attributes["contract.verdict"] == "valid"
    assert server.attributes["agent.source"] == "planner"
    assert server.attributes["http.response.status_code"] == 200
    forwarded = upstream.seen[0].headers["traceparent"]
    assert forwarded.split("-")[1:3] == [CALLER_TRACE, format(client.context.span_id, "016x")]


async def test_problem_trace_id_is_the_span_trace_id(
    gateway: RunningGateway, admin: AdminClient, http: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    async with http.post(f"{gateway.data_url}/agent/tasks", json={}) as resp:
        problem = await resp.json(content_type=None)
    (server,) = spans.get_finished_spans()
    assert problem["trace_id"] == format(server.context.trace_id, "032x")
    assert server.attributes is not None
    assert server.attributes["contract.verdict"] == "request_invalid"
    assert server.attributes["contract.violations"] == 2


def test_without_an_exporter_nothing_is_recorded_but_ids_exist() -> None:
    provider = build_tracer_provider(environ={})
    span = provider.get_tracer("t").start_span("x")
    assert not span.is_recording()
    assert span.get_span_context().trace_id != 0


async def test_otlp_exporter_from_standard_env_delivers_spans(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[ExportTraceServiceRequest] = []

    async def collector(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", collector)
    server = await aiohttp_server(app)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(server.make_url("")).rstrip("/"))
    provider = build_tracer_provider(environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "gw-test"})
    span = provider.get_tracer("t").start_span("handoff")
    assert span.is_recording()
    span.end()
    assert await asyncio.to_thread(provider.force_flush, 5000)
    await asyncio.to_thread(provider.shutdown)
    exported = [s for m in received for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.name for s in exported] == ["handoff"]
    resource = received[0].resource_spans[0].resource.attributes
    assert {a.key: a.value.string_value for a in resource}["service.name"] == "gw-test"


def test_unknown_exporter_is_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        build_tracer_provider(environ={"OTEL_TRACES_EXPORTER": "zipkin"})
