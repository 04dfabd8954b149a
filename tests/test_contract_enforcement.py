"""Request and response contracts on the data path: exact problem documents, nothing invalid passed on."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import Upstream, contract, replying

pytestmark = pytest.mark.usefixtures("gateway")


def replying_json(body: Any, status: int = 200, content_type: str = "application/json") -> Any:
    """The agent answers ``body`` (a JSON value, or raw bytes) every time."""
    return replying(body if isinstance(body, bytes) else orjson.dumps(body), status, content_type)


async def test_valid_request_and_response_pass_byte_for_byte(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    reply = b'{"result":  "done" }'  # odd spacing: proves the body is relayed, not re-serialised

    upstream.handler = replying_json(reply)
    sent = b'{"task": "x",   "priority": 1}'
    async with http.post(
        f"{gateway.data_url}/agent/tasks", data=sent, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == reply
        assert resp.headers["X-Contract-Verdict"] == "valid; contract=agent.tasks; version=1"
    assert upstream.seen[0].body == sent
    assert upstream.seen[0].path == "/tasks"


async def test_request_violation_is_422_with_every_violation_and_agent_never_called(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    payload = {"priority": "high", "tags": ["a", 7], "extra": True}
    async with http.post(f"{gateway.data_url}/agent/tasks", json=payload) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
    assert upstream.seen == []
    trace_id = problem.pop("trace_id")
    assert len(trace_id) == 32
    assert int(trace_id, 16)
    violations = sorted((v["pointer"], v["keyword"]) for v in problem.pop("violations"))
    assert violations == [("", "additionalProperties"), ("", "required"), ("/priority", "type"), ("/tags/1", "type")]
    assert problem == {
        "type": "https://agent-gateway.dev/problems/request_invalid",
        "title": "Request violates contract",
        "status": 422,
        "detail": "The request violates contract 'agent.tasks' version 1: 4 violation(s).",
        "contract": "agent.tasks",
        "version": 1,
        "direction": "request",
        "violation_count": 4,
        "violations_truncated": False,
    }


async def test_response_violation_is_502_and_the_invalid_body_never_reaches_the_caller(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())

    upstream.handler = replying_json({"result": 42, "secret": "leaked-draft"})
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 0}) as resp:
        assert resp.status == 502
        raw = await resp.read()
    assert b"leaked-draft" not in raw
    problem = orjson.loads(raw)
    assert problem["direction"] == "response"
    assert problem["contract"] == "agent.tasks"
    assert problem["version"] == 1
    assert problem["violations"] == [{"pointer": "/result", "keyword": "type", "message": '42 is not of type "string"'}]
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "keyword"),
    [
        (b"{not json", "application/json", "json"),
        (b'{"task": "x", "priority": 1', "application/json", "json"),  # truncated
        (b"", "application/json", "required"),
        (b'{"task": "x", "priority": 1}', "text/plain", "contentType"),
        (b"\xff\xfe\x00garbage", "application/json", "json"),
        (b"[1, 2, 3]", "application/json", "type"),
        (b"null", "application/json", "type"),
    ],
)
async def test_unusable_request_bodies_are_violations_not_500s(
    gateway: RunningGateway,
    upstream: Upstream,
    admin: AdminClient,
    http: aiohttp.ClientSession,
    body: bytes,
    content_type: str,
    keyword: str,
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    async with http.post(f"{gateway.data_url}/agent/tasks", data=body, headers={"Content-Type": content_type}) as resp:
        assert resp.status == 422
        problem = await resp.json(content_type=None)
    assert keyword in {v["keyword"] for v in problem["violations"]}
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("body", "content_type", "keyword"),
    [
        (b"LGTM!", "text/plain", "contentType"),
        (b'{"result": "ok"', "application/json", "json"),
        (b"", "application/json", "required"),
    ],
)
async def test_unusable_response_bodies_are_502(
    gateway: RunningGateway,
    upstream: Upstream,
    admin: AdminClient,
    http: aiohttp.ClientSession,
    body: bytes,
    content_type: str,
    keyword: str,
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())

    upstream.handler = replying_json(body, content_type=content_type)
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 0}) as resp:
        assert resp.status == 502
        problem = await resp.json(content_type=None)
    assert [v["keyword"] for v in problem["violations"]] == [keyword]


async def test_response_schema_chosen_by_exact_status_then_class_then_none(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    replies = iter([({"error": "bad"}, 404), ({"nope": 1}, 409), ({"anything": True}, 503)])

    async def handler(request: web.Request) -> web.Response:
        body, status = next(replies)
        return web.json_response(body, status=status)

    upstream.handler = handler
    results = []
    for _ in range(3):
        async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 0}) as resp:
            results.append((resp.status, resp.headers.get("X-Contract-Verdict", "").split(";")[0]))
    # 404 matches 4XX and is valid; 409 matches 4XX and is invalid → 502; 503 has no schema → relayed unchecked
    assert results == [(404, "valid"), (502, "response_invalid"), (503, "unchecked")]


async def test_shadow_mode_passes_invalid_traffic_and_says_so(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(mode="shadow"))

    upstream.handler = replying_json({"result": 1})
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"priority": -1}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"result": 1}
        verdict = resp.headers["X-Contract-Verdict"]
    assert verdict == "response_invalid; contract=agent.tasks; version=1; request_violations=2; response_violations=1"
    assert len(upstream.seen) == 1


async def test_pass_action_forwards_request_violation_with_verdict(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request(
        "PUT", "/contracts/agent.tasks", body=contract(failure_modes={"request_invalid": "pass"}, responses={})
    )
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": ""}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Contract-Verdict"].startswith("request_invalid; contract=agent.tasks; version=1")
    assert len(upstream.seen) == 1


async def test_violations_are_capped_but_counted(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    from tests.conftest import TOKEN, gateway_config

    gw = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], limits={"max_violations": 3}))
    schema = {"type": "array", "items": {"type": "integer"}}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(request={"body": schema}))
    async with http.post(f"{gw.data_url}/agent/tasks", json=["a"] * 10) as resp:
        problem = await resp.json(content_type=None)
    assert resp.status == 422
    assert len(problem["violations"]) == 3
    assert problem["violation_count"] == 4  # max_violations + 1: "more than 3"
    assert problem["violations_truncated"] is True
    assert "more than 3 violation(s)" in problem["detail"]


async def test_header_and_query_schemas(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    doc = contract(
        operation={"method": "GET", "path": "/tasks/{id}"},
        request={
            "headers": {"type": "object", "required": ["x-agent-name"]},
            "query": {
                "type": "object",
                "properties": {"limit": {"type": "string", "pattern": "^[0-9]+$"}},
                "additionalProperties": False,
            },
        },
        responses={},
    )
    await admin.request("PUT", "/contracts/agent.tasks", body=doc)
    async with http.get(f"{gateway.data_url}/agent/tasks/42?limit=ten&debug=1") as resp:
        problem = await resp.json(content_type=None)
    assert resp.status == 422
    assert sorted(v["pointer"] for v in problem["violations"]) == ["/headers", "/query", "/query/limit"]
    async with http.get(f"{gateway.data_url}/agent/tasks/42?limit=10", headers={"X-Agent-Name": "planner"}) as resp:
        assert resp.status == 200
    assert upstream.seen[-1].path == "/tasks/42"
    assert upstream.seen[-1].query_string == "limit=10"


async def test_format_assertions_are_on(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    schema = {"type": "object", "properties": {"source": {"type": "string", "format": "uri"}}}
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(request={"body": schema}, responses={}))
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"source": "not a uri"}) as resp:
        problem = await resp.json(content_type=None)
    assert resp.status == 422
    assert problem["violations"][0]["keyword"] == "format"


async def test_operations_without_contract_are_not_checked(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    async with http.post(f"{gateway.data_url}/agent/other", data=b"not json at all") as resp:
        assert resp.status == 200
        assert resp.headers["X-Contract-Verdict"] == "unchecked"  # said on every answer, contract or not
    async with http.put(f"{gateway.data_url}/agent/tasks", data=b"{}") as resp:
        assert resp.status == 200  # PUT is a different operation than the contracted POST
    assert [s.method for s in upstream.seen] == ["POST", "PUT"]


async def test_ref_across_contracts_resolves_through_shared_schemas(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    publisher = contract(
        id="agent.publish",
        operation={"method": "POST", "path": "/publish"},
        request={},
        responses={},
        schemas=[{"$id": "https://example.test/task.json", "type": "object", "required": ["task"]}],
    )
    consumer = contract(request={"body": {"$ref": "https://example.test/task.json"}}, responses={})
    await admin.request("POST", "/contracts", body={"contracts": [consumer, publisher]})
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"nope": 1}) as resp:
        problem = await resp.json(content_type=None)
    assert resp.status == 422
    assert problem["violations"][0]["message"] == '"task" is a required property'
