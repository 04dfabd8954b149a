"""The per-request shortcuts of the data path behave exactly as the general code they stand in for.

Each shortcut exists because the general path cost measurable CPU per request at 1 KiB (see
``/work/notes/readme-perf-1k.md``); these tests hold them to the general path's answers, over real sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.dataplane.target import canonical_path, canonical_target
from gateway.errors import BadRequestTarget
from tests.conftest import TOKEN, Upstream, contract, eventually, gateway_config, replying

LIMIT = 1024
JSON = {"Content-Type": "application/json"}


async def _tasks_gateway(make_gateway: Any, upstream: Upstream, **limits: Any) -> RunningGateway:
    """A gateway enforcing ``agent.tasks`` in front of an agent that answers validly."""
    upstream.handler = replying(b'{"result": "ok"}')
    gw: RunningGateway = await make_gateway(
        gateway_config([{"name": "agent", "upstream": upstream.url}], limits=limits)
    )
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    return gw


async def _raw_exchange(url: str, head_and_body: bytes) -> tuple[int, bytes]:
    """Send a whole request in one write (so it is parsed to its end before the handler runs) and read the
    answer's status line and body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head_and_body)
        await writer.drain()
        answer = await reader.read()  # "Connection: close": the gateway ends the answer by closing
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def _chunked_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


async def test_a_whole_chunked_body_over_the_limit_is_413_and_never_forwarded(
    make_gateway: Any, upstream: Upstream
) -> None:
    """A chunked body (no Content-Length to refuse it by) that arrived whole is taken from the buffer at once;
    the body limit still holds there."""
    gw = await _tasks_gateway(make_gateway, upstream, max_body_bytes=LIMIT)
    oversized = json.dumps({"task": "t" * LIMIT, "priority": 1}).encode()
    status, body = await _raw_exchange(gw.data_url, _chunked_request("/agent/tasks", oversized))
    assert status == 413
    assert json.loads(body)["limit_bytes"] == LIMIT
    assert upstream.seen == []


async def test_a_whole_body_within_the_limit_is_forwarded_byte_for_byte(make_gateway: Any, upstream: Upstream) -> None:
    gw = await _tasks_gateway(make_gateway, upstream, max_body_bytes=LIMIT)
    exact = b'{"task": "t", "priority": 1}' + b" " * (LIMIT - 28)  # exactly the limit: allowed
    status, _ = await _raw_exchange(gw.data_url, _chunked_request("/agent/tasks", exact))
    assert status == 200
    assert [seen.body for seen in upstream.seen] == [exact]


async def test_a_body_still_arriving_is_read_to_its_end(
    make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """The general path (the body not yet whole when the handler runs) still reads every chunk."""
    gw = await _tasks_gateway(make_gateway, upstream)
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"task": "t",'
        await release.wait()
        yield b' "priority": 1}'

    async def send() -> int:
        async with http.post(gw.data_url + "/agent/tasks", data=slow_body(), headers=JSON) as resp:
            await resp.read()
            return resp.status

    sending = asyncio.create_task(send())
    await eventually(lambda: gw.proxy.admit.in_flight("agent"), what="the handler waiting for the body's end")
    release.set()
    assert await sending == 200
    assert [seen.body for seen in upstream.seen] == [b'{"task": "t", "priority": 1}']


#: Path characters, the ones that make a path non-canonical among them (dots, escapes, empty segments, spaces).
PATH_ALPHABET = "ab/./%2F41-_~!$&'()*+,;=:@ "


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=PATH_ALPHABET, max_size=24).map(lambda tail: "/" + tail))
def test_a_path_taken_as_already_canonical_is_its_own_canonical_form(path: str) -> None:
    """The shortcut for a path already in canonical form answers what normalising and resolving it would."""
    try:
        general = canonical_path(path)
    except BadRequestTarget:
        general = None  # a malformed escape: refused by both
    try:
        shortcut = canonical_target(path).path
    except BadRequestTarget:
        shortcut = None
    assert shortcut == general


def test_common_paths_take_the_shortcut_and_others_do_not() -> None:
    assert canonical_target("/agent/findings?x=1").path == "/agent/findings"
    assert canonical_target("/agent/a/./b/../c//d").path == "/agent/a/c/d"
    assert canonical_target("/agent/pl%61n/").path == "/agent/plan/"
