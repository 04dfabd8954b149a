"""The leaks the sweep (``test_secrets_sweep.py``) does not reach, one by one: the rule's edges, a fallback's
refusal, and a webhook receiver whose own URL carries a credential."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.config import AuditSettings
from gateway.errors import ContractViolation, FallbackInvalid, Violation
from gateway.redaction import HIDDEN_MESSAGE, redacted_query, redacted_query_names, redactor_for
from tests.conftest import TOKEN, Upstream, contract, eventually, free_port, gateway_config

SECRET = "sk-LEAK-91f3"


def test_query_values_are_redacted_by_name_and_every_other_byte_is_kept() -> None:
    raw = "page=%2F2&API%5FKEY=k1&x=a+b&token&Sig=s2;q=1&code="
    assert redacted_query(raw) == "page=%2F2&API%5FKEY=[redacted]&x=a+b&token&Sig=[redacted]&code=[redacted]"
    assert redacted_query_names(raw) == ["API_KEY", "Sig", "code"]
    assert redacted_query("page=2&x=1") == "page=2&x=1"  # nothing matched: the very same string


@pytest.mark.parametrize(
    ("pointer", "direction", "hidden"),
    [
        ("/query", "request", True),  # the whole query object, credentials included
        ("/query/token", "request", True),
        ("/query/Api_Key", "request", True),
        ("/query/page", "request", False),
        ("/query/token", "response", False),  # a member of an answer named "query"
    ],
)
def test_query_violations_hide_what_could_quote_a_credential(pointer: str, direction: str, hidden: bool) -> None:
    redactor = redactor_for(AuditSettings())
    assert redactor.hides(pointer, direction) is hidden


def test_a_refusal_keeps_its_kind_and_counts_and_hides_only_what_could_quote_a_secret() -> None:
    redactor = redactor_for(AuditSettings(redact=("/secret",)))
    violations = (Violation("/secret", "type", f'"{SECRET}" is not of type "integer"'),
                  Violation("/name", "type", '"ann" is not of type "integer"'))  # fmt: skip
    refused = FallbackInvalid(contract="c", version=3, direction="response", violations=violations, total=7)
    shown = redactor.refusal(refused)
    assert isinstance(shown, FallbackInvalid)
    assert SECRET not in str(shown.problem("t"))
    problem = shown.problem("t")
    assert (problem["type"], problem["status"], problem["violation_count"]) == (refused.problem("t")["type"], 502, 7)
    assert problem["violations"] == [
        {"pointer": "/secret", "keyword": "type", "message": HIDDEN_MESSAGE.format(keyword="type")},
        {"pointer": "/name", "keyword": "type", "message": '"ann" is not of type "integer"'},
    ]
    stale = ContractViolation(contract="c", version=1, direction="request", violations=violations, total=2, stale=True)
    assert redactor.refusal(stale).problem("t")["status"] == 409
    harmless = ContractViolation(contract="c", version=1, direction="request", violations=violations[1:], total=1)
    assert redactor.refusal(harmless) is harmless  # nothing to hide: nothing copied


async def test_an_invalid_fallback_answer_is_refused_without_quoting_its_secret(
    make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    """The 502 ``fallback-invalid`` quoted the fallback agent's answer, credential included."""

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"wrong": True})

    async def leaky(request: web.Request) -> web.Response:
        return web.json_response({"result": "r", "secret": SECRET})

    primary: Upstream = await make_upstream(broken)
    spare: Upstream = await make_upstream(leaky)
    routes = [{"name": "agent", "upstream": primary.url}, {"name": "spare", "upstream": spare.url}]
    gw: RunningGateway = await make_gateway(gateway_config(routes, audit={"redact": ["/secret"]}))
    schema = {"type": "object", "required": ["result"], "properties": {"secret": {"type": "integer"}}}
    policy = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "fallback"},
              "fallback": {"route": "spare"}}  # fmt: skip
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={"200": schema}))
        await admin.request("PUT", "/policies/p", body=policy)
    async with http.post(f"{gw.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        problem = await resp.json()
    assert (resp.status, problem["type"]) == (502, "https://agent-gateway.dev/problems/fallback-invalid")
    assert [v["pointer"] for v in problem["violations"]] == ["/secret"]
    assert SECRET not in str(problem)


async def test_a_webhook_url_credential_is_never_shown(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """``GET /dlq/{id}`` showed the receiver's URL as configured, ``?token=`` and all."""
    hook = f"http://127.0.0.1:{free_port()}/hook?token={SECRET}&channel=ops"  # nobody listens: attempts fail
    gw: RunningGateway = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}]))
    upstream.handler = lambda request: _answer({"wrong": True})
    policy = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
              "escalation": {"respond_status": 202, "webhook": {"url": hook}}}  # fmt: skip
    caplog.set_level(logging.DEBUG)
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
        await admin.request("PUT", "/policies/p", body=policy)
        async with http.post(f"{gw.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
            item_id = (await resp.json())["escalation_id"]

        async def failed_once() -> dict[str, Any] | None:
            item: dict[str, Any] = await admin.request("GET", f"/dlq/{item_id}")
            return item if item["webhook"]["attempts"] else None

        item = await eventually(failed_once, what="a failed delivery attempt recorded")
    assert item["webhook"]["url"].endswith("/hook?token=REDACTED&channel=ops")
    assert item["webhook"]["last_error"]
    assert SECRET not in str(item)
    assert SECRET not in caplog.text


async def _answer(document: Any) -> web.Response:
    return web.json_response(document)
