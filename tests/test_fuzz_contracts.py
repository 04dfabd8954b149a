"""The contract fuzzer against real loopback agents: it finds planted bugs within the default budget, shrinks them
to minimal requests, stays quiet on correct agents, judges near-valid requests, and repeats itself given a seed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.contracts.document import load_document_file
from gateway.demo.agents import NON_ASCII_TOPIC, planted, writer
from gateway.demo.harness import agent_app
from gateway.fuzz.report import FuzzReport, junit_xml, render_text
from gateway.fuzz.run import FuzzOptions, TargetUnreachable, compile_document, run_fuzz
from tests.conftest import TOKEN, Handler, Upstream, free_port

REPO = Path(__file__).resolve().parent.parent
REQUEST = {
    "type": "object",
    "required": ["items", "name"],
    "additionalProperties": False,
    "properties": {
        "items": {"type": "array", "items": {"type": "string"}},
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "count": {"type": "integer", "minimum": 0},
    },
}
DOCUMENT: dict[str, Any] = {
    "id": "agent.tasks",
    "route": "agent",
    "operation": {"method": "POST", "path": "/tasks"},
    "request": {"body": REQUEST},
    "responses": {"200": {"type": "object", "required": ["result"], "properties": {"result": {"type": "string"}}}},
}
CONTRACT = compile_document(DOCUMENT, 1)
Breaks = Callable[[dict[str, Any]], bool]


def agent(breaks: Breaks, *, checks_input: bool = True) -> Handler:
    """An agent that refuses invalid requests with 422 (unless ``checks_input`` is off) and answers a valid one
    with a valid result, except when ``breaks(request)``: then its answer lacks ``result``."""
    validator = jsonschema.Draft202012Validator(REQUEST)

    async def handle(request: web.Request) -> web.Response:
        payload = await request.json()
        if checks_input and not validator.is_valid(payload):
            return web.json_response({"error": "invalid request"}, status=422)
        if isinstance(payload, dict) and breaks(payload):
            return web.json_response({"outcome": "done"})
        return web.json_response({"result": "done"})

    return handle


def never(payload: dict[str, Any]) -> bool:
    return False


def empty_tags(payload: dict[str, Any]) -> bool:
    return payload.get("tags") == []


def non_ascii_name(payload: dict[str, Any]) -> bool:
    return not payload["name"].isascii()


MakeUpstream = Callable[[Handler | None], Awaitable[Upstream]]


async def test_finds_a_bug_that_shows_only_for_an_empty_array_and_reports_its_minimal_request(
    make_upstream: MakeUpstream,
) -> None:
    upstream = await make_upstream(agent(empty_tags))
    report = await run_fuzz(CONTRACT, upstream.url, FuzzOptions())
    assert [case.request for case in report.failures] == [{"items": [], "name": "", "tags": []}]
    failure = report.failures[0]
    assert (failure.status, failure.outcome, failure.response) == (200, "response_invalid", {"outcome": "done"})
    assert [(v.pointer, v.keyword) for v in failure.violations] == [("", "required")]
    assert not report.warnings  # the agent refuses every near-valid request


async def test_finds_a_bug_that_shows_only_for_non_ascii_text_and_shrinks_it_to_one_character(
    make_upstream: MakeUpstream,
) -> None:
    upstream = await make_upstream(agent(non_ascii_name))
    report = await run_fuzz(CONTRACT, upstream.url, FuzzOptions())
    assert len(report.failures) == 1
    request = report.failures[0].request
    assert set(request) == {"items", "name"}
    assert request["items"] == []
    assert len(request["name"]) == 1
    assert not request["name"].isascii()


async def test_a_correct_agent_gets_a_clean_report(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(agent(never))
    report = await run_fuzz(CONTRACT, upstream.url, FuzzOptions())
    assert report.clean
    assert not report.warnings
    assert report.generated > 50
    assert report.boundary > 5
    assert report.near_valid_sent >= 6
    assert "OK: every answer to a valid request met the contract" in render_text(report)


@pytest.mark.parametrize(("mode", "failing"), [("require", True), ("report", False)])
async def test_near_valid_requests_answered_200_are_caught(
    make_upstream: MakeUpstream, mode: str, failing: bool
) -> None:
    upstream = await make_upstream(agent(never, checks_input=False))
    report = await run_fuzz(CONTRACT, upstream.url, FuzzOptions(max_examples=10, near_valid=mode))  # type: ignore[arg-type]
    found = report.failures if failing else report.warnings
    assert report.clean is not failing
    missing = next(case for case in found if case.what == "missing required member /name")
    assert (missing.request, missing.status, missing.outcome) == ({"items": []}, 200, "request_invalid")
    assert [(v.pointer, v.keyword) for v in missing.violations] == [("", "required")]
    assert {case.what for case in found} >= {"extra member /fuzz_extra_member", "wrong type at /items: string"}


async def test_near_valid_off_sends_none(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(agent(never, checks_input=False))
    report = await run_fuzz(CONTRACT, upstream.url, FuzzOptions(max_examples=10, near_valid="off"))
    assert report.near_valid_sent == 0
    assert report.clean
    assert not report.warnings


def _without_timing(report: FuzzReport) -> dict[str, Any]:
    return report.model_dump(exclude={"elapsed_seconds"})


async def test_the_seed_makes_runs_identical(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(agent(non_ascii_name))
    first, second = [await run_fuzz(CONTRACT, upstream.url, FuzzOptions(seed=7)) for _ in range(2)]
    assert _without_timing(first) == _without_timing(second)
    assert first.failures


async def test_junit_xml_parses_and_holds_the_failure(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(agent(empty_tags))
    suite = ET.fromstring(junit_xml(await run_fuzz(CONTRACT, upstream.url, FuzzOptions(max_examples=20))))
    failures = suite.findall("testcase/failure")
    assert suite.get("failures") == "1"
    assert len(failures) == 1
    assert failures[0].get("type") == "response_invalid"
    assert '"tags":[]' in (failures[0].text or "")
    assert int(suite.get("tests") or 0) == len(suite.findall("testcase")) >= 2


async def test_an_unreachable_target_is_an_error_not_a_report() -> None:
    with pytest.raises(TargetUnreachable):
        await run_fuzz(CONTRACT, f"http://127.0.0.1:{free_port()}", FuzzOptions(max_examples=5))


async def test_through_a_gateway_the_gateways_verdict_is_reported(
    gateway: RunningGateway, admin: AdminClient, upstream: Upstream
) -> None:
    upstream.handler = agent(non_ascii_name)
    await admin.request("PUT", "/contracts/agent.tasks", body=DOCUMENT)
    report = await run_fuzz(CONTRACT, f"{gateway.data_url}/agent", FuzzOptions())
    assert len(report.failures) == 1
    assert not report.warnings
    failure = report.failures[0]
    assert (failure.status, failure.outcome, failure.gateway_verdict) == (502, "response_invalid", "response_invalid")
    assert [(v.pointer, v.keyword) for v in failure.violations] == [("", "required")]
    assert TOKEN  # the admin fixture used it


RPC_DOCUMENT: dict[str, Any] = {
    "id": "tools.add",
    "route": "mcp",
    "operation": {"method": "POST", "path": "/mcp"},
    "jsonrpc": {
        "method": "tools/call",
        "tool": "add",
        "params": {
            "type": "object",
            "required": ["arguments"],
            "properties": {
                "arguments": {
                    "type": "object",
                    "required": ["a"],
                    "properties": {"a": {"type": "integer", "maximum": 100}},
                }
            },
        },
        "result": {"type": "object", "required": ["structuredContent"]},
    },
}


async def mcp_add(request: web.Request) -> web.Response:
    """A tools/call server whose ``add`` forgets ``structuredContent`` for negative numbers."""
    call = await request.json()
    arguments = call["params"].get("arguments") if isinstance(call.get("params"), dict) else None
    a = arguments.get("a") if isinstance(arguments, dict) else None
    if not isinstance(a, int) or isinstance(a, bool) or a > 100:
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32602, "message": "bad a"}})
    result = {"content": []} if a < 0 else {"content": [], "structuredContent": {"result": a + 1}}
    return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": result})


async def test_json_rpc_tool_arguments_are_fuzzed_inside_an_envelope(make_upstream: MakeUpstream) -> None:
    upstream = await make_upstream(mcp_add)
    report = await run_fuzz(compile_document(RPC_DOCUMENT, 1), upstream.url, FuzzOptions(max_examples=50))
    assert len(report.failures) == 1
    assert not report.warnings
    failure = report.failures[0]
    assert failure.request == {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"arguments": {"a": -1}, "name": "add"}
    }  # fmt: skip
    assert [(v.pointer, v.keyword) for v in failure.violations] == [("/result", "required")]


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app)
    await server.start_server()
    return server


async def test_the_demo_writer_is_clean_and_its_planted_bug_is_found() -> None:
    contract = compile_document(load_document_file(REPO / "contracts" / "writer.draft.yaml"), 1)
    correct = await _serve(agent_app("writer", "/draft", writer, Counter()))
    buggy = await _serve(agent_app("writer", "/draft", planted(NON_ASCII_TOPIC), Counter()))
    try:
        options = FuzzOptions(near_valid="off")
        clean = await run_fuzz(contract, str(correct.make_url("")), options)
        found = await run_fuzz(contract, str(buggy.make_url("")), options)
    finally:
        await correct.close()
        await buggy.close()
    assert clean.clean
    assert len(found.failures) == 1
    request = found.failures[0].request
    assert request["steps"] == [None]
    assert len(request["topic"]) == 1
    assert not request["topic"].isascii()
    assert [(v.pointer, v.keyword) for v in found.failures[0].violations] == [("/draft", "required")]
