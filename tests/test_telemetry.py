"""Trace context and the OTel HTTP conventions: one trace id across caller, gateway spans, the upstream agent and
problem documents; span names, attributes, ``error.type`` and ``http.request.resend_count`` as the conventions say."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from yarl import URL

from gateway import __version__
from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.observability import semconv as sc
from gateway.observability.spans import redacted_url
from gateway.observability.telemetry import (
    ServerSpans,
    build_resource,
    build_tracer_provider,
    propagator,
    tracer_for,
)
from tests.conftest import Upstream, contract, free_port, gateway_config, scripted
from tests.test_policies import FAST_RETRY

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
    assert server.name == "POST /agent/tasks"
    assert server.attributes is not None
    assert {k: v for k, v in server.attributes.items() if k != sc.RUN_ID} == {
        "http.request.method": "POST", "url.path": "/agent/tasks", "url.scheme": "http",
        "network.protocol.version": "1.1", "http.route": "/agent/tasks", "http.response.status_code": 200,
        "agent_gateway.route": "agent", "gen_ai.agent.name": "agent", "agent_gateway.agent.source": "planner",
        "agent_gateway.contract.id": "agent.tasks", "agent_gateway.contract.version": 1,
        "agent_gateway.contract.verdict": "unchecked",  # the request checked; no schema for the answer
    }  # fmt: skip
    assert server.status.status_code is StatusCode.UNSET
    assert client.name == "POST"
    assert client.attributes is not None
    assert {k: v for k, v in client.attributes.items() if k != sc.RUN_ID} == {
        "http.request.method": "POST", "server.address": "127.0.0.1", "server.port": upstream.server.port,
        "url.full": f"{upstream.url}/tasks", "gen_ai.agent.name": "agent", "http.response.status_code": 200,
    }  # fmt: skip
    assert client.attributes[sc.RUN_ID] == server.attributes[sc.RUN_ID]
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
    assert server.attributes["agent_gateway.contract.verdict"] == "request_invalid"
    assert server.attributes["agent_gateway.contract.violations"] == 2
    assert server.attributes["error.type"] == "request_invalid"  # a refusal: the verdict is its error type
    assert server.attributes["http.response.status_code"] == 422
    assert server.status.status_code is StatusCode.UNSET  # a 4xx is the caller's error, not the server's


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


def _by_start(spans: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans.get_finished_spans() if s.kind == kind), key=lambda s: s.start_time or 0)


async def test_each_attempt_is_a_client_span_counting_resends_and_saying_why_it_failed(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession,
    spans: InMemorySpanExporter,
) -> None:  # fmt: skip
    upstream.handler = scripted((200, b'{"result": '), (503, {"error": "busy"}), (200, {"result": "ok"}))
    idempotent = {"method": "POST", "path": "/tasks", "idempotent": True}
    await admin.request(
        "PUT", "/contracts/agent.tasks",
        body=contract(operation=idempotent, failure_modes={"response_invalid": "retry"}),
    )  # fmt: skip
    await admin.request("PUT", "/policies/p", body={"id": "p", "attach": {"route": "agent"}, "retry": FAST_RETRY})
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        assert resp.status == 200
    attempts = [
        (a.get(sc.HTTP_REQUEST_RESEND_COUNT), a.get(sc.HTTP_RESPONSE_STATUS_CODE), a.get(sc.ERROR_TYPE),
         s.status.status_code)
        for s in _by_start(spans, SpanKind.CLIENT)
        for a in [s.attributes or {}]
    ]  # fmt: skip
    assert attempts == [
        (None, 200, "response_invalid", StatusCode.ERROR),  # the first attempt is not a resend (semconv)
        (1, 503, "503", StatusCode.ERROR),
        (2, 200, None, StatusCode.UNSET),
    ]
    (server,) = _by_start(spans, SpanKind.SERVER)
    assert server.attributes is not None
    assert sc.ERROR_TYPE not in server.attributes  # the handoff succeeded in the end
    assert server.attributes[sc.CONTRACT_VERDICT] == "valid"


async def test_error_type_for_a_dead_agent_a_relayed_5xx_and_an_unknown_path(
    make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    failing = await make_upstream(scripted((500, {"error": "boom"})))
    gw = await make_gateway(
        gateway_config([{"name": "dead", "upstream": f"http://127.0.0.1:{free_port()}"},
                        {"name": "failing", "upstream": failing.url}])
    )  # fmt: skip
    for path in ("/dead/x", "/failing/x", "/nowhere"):
        async with http.get(f"{gw.data_url}{path}") as resp:
            await resp.read()
    servers = [
        (s.name, (s.attributes or {}).get(sc.HTTP_ROUTE), (s.attributes or {}).get(sc.ERROR_TYPE), s.status.status_code)
        for s in _by_start(spans, SpanKind.SERVER)
    ]  # fmt: skip
    assert servers == [
        ("GET /dead/*", "/dead/*", "upstream_error", StatusCode.ERROR),
        ("GET /failing/*", "/failing/*", "500", StatusCode.ERROR),  # the agent's own 5xx, relayed
        ("GET", None, "no-route", StatusCode.UNSET),  # no route matched: no http.route (semconv)
    ]
    dead, relayed = _by_start(spans, SpanKind.CLIENT)
    assert (dead.attributes or {})[sc.ERROR_TYPE] == "ClientConnectorError"
    assert dead.events[0].name == "exception"
    assert (relayed.attributes or {})[sc.ERROR_TYPE] == "500"


async def test_a_method_outside_the_known_set_is_other(
    gateway: RunningGateway, http: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    async with http.request("PROPFIND", f"{gateway.data_url}/agent/x") as resp:
        assert resp.status == 200
    (server,) = _by_start(spans, SpanKind.SERVER)
    assert server.name == "HTTP /agent/*"
    assert server.attributes is not None
    assert (server.attributes[sc.HTTP_REQUEST_METHOD], server.attributes[sc.HTTP_REQUEST_METHOD_ORIGINAL]) == (
        "_OTHER", "PROPFIND",
    )  # fmt: skip


async def test_an_unsampled_caller_gets_no_spans_but_one_trace_id(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession,
    spans: InMemorySpanExporter,
) -> None:  # fmt: skip
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    unsampled = f"00-{CALLER_TRACE}-00f067aa0ba902b7-00"
    async with http.post(f"{gateway.data_url}/agent/tasks", json={}, headers={"traceparent": unsampled}) as resp:
        assert (await resp.json(content_type=None))["trace_id"] == CALLER_TRACE
    async with http.get(f"{gateway.data_url}/agent/x", headers={"traceparent": unsampled}) as resp:
        assert resp.status == 200
    assert spans.get_finished_spans() == ()
    forwarded = upstream.seen[0].headers["traceparent"]
    assert forwarded.startswith(f"00-{CALLER_TRACE}-")
    assert forwarded.endswith("-00")  # still unsampled: the agent does not record either


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://agent:8001/plan?x=1", "http://agent:8001/plan?x=1"),
        ("http://ann:s3cret@agent:8001/plan", "http://REDACTED:REDACTED@agent:8001/plan"),
        ("http://agent/p?sig=abc&x=1&api_key=k&X-Goog-Signature=g",
         "http://agent/p?sig=REDACTED&x=1&api_key=REDACTED&X-Goog-Signature=REDACTED"),
    ],
)  # fmt: skip
def test_url_full_never_shows_credentials(url: str, shown: str) -> None:
    assert redacted_url(URL(url)) == shown


def test_resource_names_the_release_and_the_environment_overrides_it() -> None:
    plain = build_resource({}).attributes
    assert (plain["service.name"], plain["service.version"]) == ("agent-gateway", __version__)
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.version=9, deployment.environment=ci%20eu", "OTEL_SERVICE_NAME": "gw"}
    custom = build_resource(env).attributes
    assert (custom["service.name"], custom["service.version"], custom["deployment.environment"]) == ("gw", "9", "ci eu")


@pytest.mark.parametrize("traceparent", [None, TRACEPARENT, f"00-{CALLER_TRACE}-00f067aa0ba902b7-00"])
def test_the_non_recording_fast_path_decides_as_the_sdk_does(traceparent: str | None) -> None:
    """With no exporter the gateway builds the unsampled SERVER span itself; it must be the span the SDK's
    ``ALWAYS_OFF`` sampler would give: same trace (or a new one), same tracestate, flags, a fresh span id."""
    headers = {"tracestate": "vendor=abc"} | ({"traceparent": traceparent} if traceparent else {})
    parent = propagator().extract(headers)
    tracer = tracer_for(build_tracer_provider(environ={}))
    fast, sdk = ServerSpans(tracer).start("GET", parent), tracer.start_span("GET", context=parent)
    assert not fast.is_recording()
    ours, theirs = fast.get_span_context(), sdk.get_span_context()
    assert (ours.trace_id == theirs.trace_id) is (traceparent is not None)
    assert (ours.trace_flags, ours.trace_state, ours.is_remote) == (theirs.trace_flags, theirs.trace_state, False)
    assert ours.is_valid
    assert ours.span_id not in (theirs.span_id, 0x00F067AA0BA902B7)
