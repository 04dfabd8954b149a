"""One redaction policy for audit records, DLQ items, webhook payloads: no secret is kept or shown.

The attacker's view: a secret reaches the gateway in a header, in a body field at a redacted pointer, or in an
agent's answer, and then every place the gateway keeps or shows data is searched for it verbatim — including
violation messages, which quote the instance they are about (at the field, or at any ancestor of it).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway
from gateway.config import AuditSettings
from gateway.jsonpointer import MISSING, REDACTED, redact, redact_patterns, resolve, tokens
from gateway.redaction import redactor_for
from tests.conftest import TOKEN, Upstream, contract, eventually, gateway_config, replying

REDACT = ["/secret", "/users/*/password"]
SECRETS = ("sk-REQ-1", "pw-REQ-2", "pw-REQ-3", "key-HDR-4", "tok-HDR-5", "sk-UP-6")
REQUEST = {"secret": "sk-REQ-1", "users": [{"name": "ann", "password": "pw-REQ-2"}, {"password": "pw-REQ-3"}]}
# Every field has the wrong type, so each violation message quotes the value; ``minProperties`` at the root
# quotes the whole document.
USER = {"properties": {"name": {"type": "integer"}, "password": {"type": "integer"}}}
STRICT = {
    "type": "object",
    "minProperties": 5,
    "properties": {"secret": {"type": "integer"}, "users": {"type": "array", "items": USER}},
}


def leaked(document: Any) -> list[str]:
    text = orjson.dumps(document).decode()
    return [secret for secret in SECRETS if secret in text]


async def start(make_gateway: Any, upstream: Upstream, **audit: Any) -> RunningGateway:
    routes = [{"name": "agent", "upstream": upstream.url}]
    gw: RunningGateway = await make_gateway(gateway_config(routes, audit={"redact": REDACT, **audit}))
    return gw


# -- pointers and patterns -------------------------------------------------------------------------------


def test_redaction_copies_only_the_paths_to_redacted_values() -> None:
    big = [{"n": i} for i in range(10_000)]
    doc = {"big": big, "nested": {"secret": "s", "other": {"x": 1}}, "users": [{"password": "p", "name": "a"}]}
    found: list[str] = []
    result = redact_patterns(doc, [tokens("/nested/secret"), tokens("/users/*/password")], found)
    assert result["nested"] == {"secret": REDACTED, "other": {"x": 1}}
    assert result["users"] == [{"password": REDACTED, "name": "a"}]
    assert found == ["/nested/secret", "/users/0/password"]
    assert result["big"] is big  # shared, not copied
    assert result["nested"]["other"] is doc["nested"]["other"]
    assert doc["nested"]["secret"] == "s"  # the original is untouched
    assert doc["users"][0]["password"] == "p"
    assert redact(doc, ["/missing/x", "/big/x", "/nested/secret/deeper"]) is doc  # nothing matched: no copy


def test_wildcards_match_every_member_and_item() -> None:
    doc = {"a": {"k1": {"t": 1}, "k2": {"t": 2, "u": 3}}, "l": [[1, 2], [3]]}
    assert redact(doc, ["/a/*/t"]) == {"a": {"k1": {"t": REDACTED}, "k2": {"t": REDACTED, "u": 3}}, "l": [[1, 2], [3]]}
    assert redact(doc, ["/l/*/0"])["l"] == [[REDACTED, 2], [REDACTED]]
    assert redact(doc, [""]) == REDACTED


@pytest.mark.parametrize("token", ["01", "²", "-1", "1"])
def test_array_indices_are_plain_decimal(token: str) -> None:
    doc = {"l": ["a", "b"]}
    valid = token == "1"
    assert resolve(doc, f"/l/{token}") == ("b" if valid else MISSING)
    assert redact(doc, [f"/l/{token}"]) == ({"l": ["a", REDACTED]} if valid else doc)


@pytest.mark.parametrize(
    ("pointer", "direction", "hidden"),
    [
        ("/secret", "request", True),  # at a redacted pointer
        ("/secret/x", "request", True),  # inside it
        ("", "request", True),  # the root quotes the whole document
        ("/users", "response", True),  # an ancestor of /users/*/password
        ("/users/3", "request", True),
        ("/users/3/password", "request", True),
        ("/users/3/name", "request", False),  # a sibling of the secret: its message cannot quote it
        ("/task", "request", False),
        ("/headers", "request", True),  # the whole header object, credentials included
        ("/headers/X-Api-Key", "request", True),
        ("/headers/x-trace", "request", False),
        ("/headers/authorization", "response", False),  # a response body member named "headers"
        ("not a pointer", "request", True),
    ],
)
def test_violation_messages_hidden_at_inside_and_above_redacted_values(
    pointer: str, direction: str, hidden: bool
) -> None:
    redactor = redactor_for(AuditSettings(redact=REDACT))
    violation = {"pointer": pointer, "keyword": "type", "message": "quoted value", "direction": direction}
    (kept,) = redactor.violations([violation])
    assert (kept["message"] != "quoted value") == hidden
    assert (kept["pointer"], kept["keyword"]) == (pointer, "type")
    if hidden:
        assert "'type'" in kept["message"]


def test_bodies_keep_their_exact_bytes_unless_a_pointer_matched() -> None:
    redactor = redactor_for(AuditSettings(redact=REDACT))
    untouched = b'{ "task" : "t" }'
    assert redactor.body(untouched).body is untouched
    assert redactor.body(b"secret=sk-1").body == b"secret=sk-1"  # not JSON: pointers cannot address it
    redacted = redactor.body(orjson.dumps(REQUEST))
    assert redacted.pointers == ("/secret", "/users/0/password", "/users/1/password")
    assert leaked(orjson.loads(redacted.body or b"")) == []
    assert redactor.header_values({"X-API-KEY": "k", "Accept": "a"}) == {"X-API-KEY": REDACTED, "Accept": "a"}


# -- the audit trail -------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["request", "response"])
async def test_run_timeline_never_shows_a_redacted_value(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession, direction: str
) -> None:
    gw = await start(make_gateway, upstream, payloads=True)
    permissive = {"type": "object"}
    schemas = {"request": {"body": STRICT if direction == "request" else permissive}}
    schemas["responses"] = {"200": STRICT if direction == "response" else permissive}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(**schemas))
        async with http.post(f"{gw.data_url}/agent/tasks", json=REQUEST, headers={"X-Run-Id": "r"}) as resp:
            assert resp.status == (422 if direction == "request" else 502)
        run = await admin.request("GET", "/runs/r")
    assert run["entry_point"]["verdict"] == f"{direction}_invalid"
    assert leaked(run) == []
    messages = {v["pointer"]: v["message"] for v in run["entry_point"]["violations"]}
    assert set(messages) == {"", "/secret", "/users/0/name", "/users/0/password", "/users/1/password"}
    assert messages["/users/0/name"] == '"ann" is not of type "integer"'  # unrelated to a secret: kept
    assert messages[""].startswith("[redacted]")


# -- the dead-letter queue and its webhook ---------------------------------------------------------------


@pytest.fixture
async def webhook(aiohttp_server: Any) -> tuple[str, list[bytes]]:
    received: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook")), received


async def test_dlq_items_and_webhook_hold_no_secret_and_say_what_was_redacted(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession, webhook: tuple[str, list[bytes]]
) -> None:
    gw = await start(make_gateway, upstream)

    async def agent(request: web.Request) -> web.Response:
        return web.json_response({"result": "ok", "secret": "sk-UP-6"})

    upstream.handler = agent
    pol = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
           "escalation": {"respond_status": 202, "webhook": {"url": webhook[0]}}}  # fmt: skip
    headers = {"X-Api-Key": "key-HDR-4", "Authorization": "Bearer tok-HDR-5", "X-Trace-Note": "visible"}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        docs = {"request": {"body": {"type": "object"}}, "responses": {"200": STRICT}}
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(**docs))
        await admin.request("PUT", "/policies/p", body=pol)
        async with http.post(f"{gw.data_url}/agent/tasks", json=REQUEST, headers=headers) as resp:
            assert resp.status == 202
            item_id = (await resp.json())["escalation_id"]
        item = await admin.request("GET", f"/dlq/{item_id}")
        listed = await admin.request("GET", "/dlq")
    await eventually(lambda: webhook[1], what="the webhook delivered")
    notified = json.loads(webhook[1][0])["escalation"]
    for shown in (item, listed, notified):
        assert leaked(shown) == []
    assert item["request_headers"]["X-Trace-Note"] == "visible"
    assert item["request"]["json"]["users"][0]["name"] == "ann"
    assert item["upstream"]["json"] == {"result": "ok", "secret": REDACTED}
    expected = {
        "request_headers": ["X-Api-Key", "Authorization"],
        "request": ["/secret", "/users/0/password", "/users/1/password"],
        "upstream": ["/secret"],
    }
    assert item["redacted"] == expected
    assert notified["redacted"] == expected
    assert {v["pointer"] for v in item["violations"]} >= {"/secret", ""}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        with pytest.raises(AdminAPIError) as replay:
            await admin.request("POST", f"/dlq/{item_id}/replay")
        still = await admin.request("GET", f"/dlq/{item_id}")
    refused = replay.value.problem
    assert replay.value.status == 409
    assert refused["type"].endswith("replay-redacted")
    assert {"header": "Authorization"} in refused["errors"]
    assert {"pointer": "/secret"} in refused["errors"]
    assert still["status"] == "pending"  # nothing was resent; a person resolves it instead


async def test_a_resolution_resumes_a_keyed_request_whose_stored_body_was_redacted(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """The DLQ keeps the body redacted, but the checkpoint a resolution fills is keyed by the body as received:
    the pipeline's re-run of the same request gets the person's answer (not 422 idempotency-key-reused)."""
    gw = await start(make_gateway, upstream)

    async def agent(request: web.Request) -> web.Response:
        return web.json_response({"result": 7})

    upstream.handler = agent
    pol = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
           "escalation": {"respond_status": 202}}  # fmt: skip
    headers = {"Idempotency-Key": "step-1"}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(request={"body": {"type": "object"}}))
        await admin.request("PUT", "/policies/p", body=pol)
        async with http.post(f"{gw.data_url}/agent/tasks", json=REQUEST, headers=headers) as first:
            assert first.status == 202
            item_id = (await first.json())["escalation_id"]
        await admin.request("POST", f"/dlq/{item_id}/resolve", body={"body": {"result": "fixed"}})
    async with http.post(f"{gw.data_url}/agent/tasks", json=REQUEST, headers=headers) as rerun:
        assert rerun.status == 200
        assert rerun.headers["X-Checkpoint"] == "hit"
        assert await rerun.json() == {"result": "fixed"}


async def test_an_item_whose_query_credential_was_redacted_is_not_replayed_with_the_marker(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """``?token=`` is stored redacted: resending ``token=[redacted]`` is not the request that failed (409)."""
    gw = await start(make_gateway, upstream)
    upstream.handler = replying(b'{"unexpected": true}')
    pol = {"id": "p", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
           "escalation": {"respond_status": 202}}  # fmt: skip
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
        await admin.request("PUT", "/policies/p", body=pol)
        async with http.post(
            f"{gw.data_url}/agent/tasks?token=tok-Q-1&page=2", json={"task": "t", "priority": 1}
        ) as resp:
            assert resp.status == 202
            item_id = (await resp.json())["escalation_id"]
        with pytest.raises(AdminAPIError) as replay:
            await admin.request("POST", f"/dlq/{item_id}/replay")
    assert replay.value.status == 409
    assert replay.value.problem["errors"] == [{"query": "token"}]
    assert len(upstream.seen) == 1  # nothing was resent


async def test_a_refusal_inside_an_event_stream_does_not_quote_a_redacted_value(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """The error event that ends a stream is a refusal like any other: its message would quote the value."""
    gw = await start(make_gateway, upstream)
    upstream.handler = replying(b'data: {"secret": "sk-STREAM-1"}\n\n', content_type="text/event-stream")
    events = {"200": {"type": "object", "properties": {"secret": {"type": "integer"}}}}
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}, events=events))
    async with http.post(f"{gw.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        streamed = await resp.text()
    assert '"pointer":"/secret","keyword":"type"' in streamed  # the error event replaces the invalid one
    assert "sk-STREAM-1" not in streamed
