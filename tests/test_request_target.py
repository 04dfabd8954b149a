"""The canonical request target: every spelling of a contracted path is either checked or refused.

The contract is matched on the path the agent will serve, so the tests look from the agent's side: the agent
records the path *it* decoded (aiohttp's ``request.path``), and no invalid body may ever reach the contracted
handler, however the caller spelled the path (escapes, dot-segments, doubled slashes, matrix parameters,
absolute-form targets). Requests are written on raw sockets so no client library normalises them first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.dataplane.target import canonical_target, contract_path
from gateway.errors import BadRequestTarget
from tests.conftest import TOKEN, Handler, Upstream, contract, gateway_config

INVALID = b'{"task": "", "priority": -1}'
VALID = b'{"task": "plan", "priority": 1}'


async def send_raw(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request written byte for byte; the status code and the body of the answer."""
    status, _, payload = await exchange_raw(port, method, target, body)
    return status, payload


async def exchange_raw(
    port: int, method: str, target: str, body: bytes = b"", extra_headers: str = ""
) -> tuple[int, bytes, bytes]:
    """One request written byte for byte; the status code, the raw header block and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{extra_headers}"
        writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1") + body)
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    head, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), head, payload


@pytest.fixture
async def decoded_paths(make_upstream: Callable[[Handler | None], Awaitable[Upstream]]) -> tuple[Upstream, list[str]]:
    """An agent that records each path as its own router sees it (decoded)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"result": "ok"})

    return await make_upstream(handler), seen


@pytest.fixture
async def guarded(
    make_gateway: Callable[..., Awaitable[RunningGateway]], decoded_paths: tuple[Upstream, list[str]]
) -> RunningGateway:
    """Route ``agent`` with the ``POST /tasks`` contract, plus a route whose upstream has a base path."""
    upstream, _ = decoded_paths
    gateway = await make_gateway(
        gateway_config(
            [
                {"name": "agent", "upstream": upstream.url},
                {"name": "sub", "upstream": f"{upstream.url}/base"},
                {"name": "keep", "upstream": upstream.url, "escaped_slashes": "keep"},
            ]
        )
    )
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(responses={}))
    return gateway


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/agent/tasks", "/agent/tasks"),
        ("/agent/t%61sks", "/agent/tasks"),
        ("/agent/%74asks", "/agent/tasks"),
        ("/%61gent/tasks", "/agent/tasks"),
        ("/agent/x/../tasks", "/agent/tasks"),
        ("/agent/./tasks", "/agent/tasks"),
        ("/agent/x/%2e%2e/tasks", "/agent/tasks"),
        ("/agent/x/%2E./tasks", "/agent/tasks"),
        ("//agent//tasks", "/agent/tasks"),
        ("/agent/tasks/", "/agent/tasks/"),
        ("/agent/tasks/.", "/agent/tasks/"),
        ("/sub/../../x", "/x"),
        ("/..", "/"),
        ("http://elsewhere/agent/tasks?a=1", "/agent/tasks"),
        ("/a%7e%41%3a%3A", "/a~A%3A%3A"),
        ("/a b", "/a%20b"),
    ],
)
def test_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_target(raw).path == canonical


@pytest.mark.parametrize("raw", ["/a#frag", "/a\\b", "/a%zz", "/a%4", "/a%00b", "tasks", "*"])
def test_targets_without_a_canonical_form_are_refused(raw: str) -> None:
    with pytest.raises(BadRequestTarget):
        canonical_target(raw)


@pytest.mark.parametrize(
    ("path", "matched"),
    [
        ("/tasks;v=1", "/tasks"),
        ("/x/..;/tasks", "/tasks"),
        ("/tasks/1%3Acancel", "/tasks/1:cancel"),
        ("/t%C3%A2ches", "/tâches"),
        ("/a%2Fb", "/a%2Fb"),
    ],
)
def test_contracts_match_the_path_as_the_agent_decodes_it(path: str, matched: str) -> None:
    assert contract_path(canonical_target(path).path) == matched


@given(st.text(alphabet="/.%2eEfF;a\\#?:", max_size=24).map(lambda s: "/" + s))
def test_canonical_form_is_a_fixed_point(raw: str) -> None:
    try:
        once = canonical_target(raw).path
    except BadRequestTarget:
        return
    assert canonical_target(once).path == once
    assert "//" not in once
    assert not any(segment in (".", "..") for segment in once.split("/"))


def _escape(char: str, upper: bool) -> str:
    code = f"%{ord(char):02x}"
    return code.upper() if upper else code


@st.composite
def spellings(draw: st.DrawFn, segments: tuple[str, ...] = ("agent", "tasks")) -> str:
    """A spelling of ``/agent/tasks`` an agent would read as that path, or as a near miss."""
    parts: list[str] = []
    for segment in segments:
        noise = draw(st.lists(st.sampled_from(["", ".", "x/..", "%2e", "x/%2e%2E", "y/..;"]), max_size=2))
        parts += noise
        spelled = "".join(_escape(c, draw(st.booleans())) if draw(st.integers(0, 3)) == 0 else c for c in segment)
        parts.append(spelled + draw(st.sampled_from(["", "", ";v=1", ";", "%2F", "%3B"])))
    path = "/" + "/".join(parts) + draw(st.sampled_from(["", "/", "/.", "?x=1"]))
    return draw(st.sampled_from(["", "http://gw"])) + path


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=spellings())
async def test_every_spelling_of_a_contracted_path_is_checked_or_refused(
    guarded: RunningGateway, decoded_paths: tuple[Upstream, list[str]], target: str
) -> None:
    _, seen = decoded_paths
    before = len(seen)
    status, _ = await send_raw(guarded.data_port, "POST", target, INVALID)
    assert status in (400, 404, 422), (target, status)
    # Whatever reached the agent, it was not an invalid body at the contracted handler.
    assert all(path.rstrip("/") != "/tasks" for path in seen[before:]), (target, seen[before:])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=spellings())
async def test_what_is_forwarded_is_the_canonical_path_that_was_checked(
    guarded: RunningGateway, decoded_paths: tuple[Upstream, list[str]], target: str
) -> None:
    upstream, seen = decoded_paths
    forwarded = len(upstream.seen)
    status, head, _ = await exchange_raw(guarded.data_port, "POST", target, VALID)
    if status != 200:
        assert status in (400, 404), (target, status)
        return
    raw_path = upstream.seen[forwarded].path
    assert canonical_target(raw_path).path == raw_path  # the agent received the canonical form, untouched
    if seen[-1].rstrip("/") == "/tasks":  # the agent served its contracted handler: the contract was applied
        # the request was checked (contract named); the answer has no schema (``responses={}``): unchecked
        assert b"X-Contract-Verdict: unchecked; contract=agent.tasks" in head, (target, head)


@pytest.mark.parametrize(
    "target",
    ["/agent/pl%61n/../tasks", "/agent/t%61sks", "/agent/%74asks", "/agent/x/../tasks", "/agent/./tasks",
     "/agent/x/%2e%2e/tasks", "/agent/tasks;x=1", "/agent/x/..;/tasks", "http://evil/agent/tasks"],
)  # fmt: skip
async def test_issue_spellings_get_the_contract_verdict(
    guarded: RunningGateway, decoded_paths: tuple[Upstream, list[str]], target: str
) -> None:
    status, body = await send_raw(guarded.data_port, "POST", target, INVALID)
    assert status == 422
    assert json.loads(body)["contract"] == "agent.tasks"
    assert decoded_paths[1] == []


@pytest.mark.parametrize("target", ["/agent/tasks%2f", "/agent/tasks%2F", "/agent%2Ftasks", "/agent/a%5Ctasks"])
async def test_escaped_slashes_are_refused_unless_the_route_keeps_them(
    guarded: RunningGateway, decoded_paths: tuple[Upstream, list[str]], target: str
) -> None:
    status, body = await send_raw(guarded.data_port, "POST", target, INVALID)
    assert status in (400, 404)
    assert json.loads(body)["type"].endswith(("bad-request-target", "no-route"))
    assert decoded_paths[1] == []


async def test_a_route_that_keeps_escaped_slashes_forwards_them_encoded(
    guarded: RunningGateway, decoded_paths: tuple[Upstream, list[str]]
) -> None:
    upstream, _ = decoded_paths
    status, _ = await send_raw(guarded.data_port, "GET", "/keep/a%2fb")
    assert status == 200
    assert upstream.seen[-1].path == "/a%2Fb"


@pytest.mark.parametrize("target", ["/sub/../../x", "/sub/..%2f..%2fx", "/sub/%2e%2e/%2e%2e/x", "/sub/x/../../../y"])
async def test_a_path_cannot_escape_the_routes_upstream_base_path(
    guarded: RunningGateway, decoded_paths: tuple[Upstream, list[str]], target: str
) -> None:
    await send_raw(guarded.data_port, "GET", target)
    assert all(path.startswith("/base") for path in decoded_paths[1])


@pytest.mark.parametrize("target", ["/agent/tasks#x", "/agent\\tasks", "/agent/t%zzasks", "/agent/%00"])
async def test_unusable_targets_get_a_problem_document(guarded: RunningGateway, target: str) -> None:
    status, body = await send_raw(guarded.data_port, "POST", target, VALID)
    assert status == 400
    problem = json.loads(body)
    assert problem["type"].endswith("bad-request-target")
    assert problem["trace_id"]
