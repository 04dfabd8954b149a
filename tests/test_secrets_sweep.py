"""Credentials never appear where the gateway keeps or shows data: one sweep through a real gateway.

Every request carries credentials in headers (``X-Api-Key``, ``Authorization``), in the query (``api_key``,
``token``) and in a body member at an ``audit.redact`` pointer; the agent answers with one at a redacted pointer
too. The handoffs cover a valid keyed call (checkpoint), a refused request (422 quoting the caller's values), a
refused answer (502 quoting the agent's), an escalated answer (DLQ item, signed webhook to a real receiver) and an
agent that is down (a CLIENT span with the exception). Then everything is searched for each secret verbatim: the
store's raw bytes (the SQLite file with its WAL, or every Redis value), every log line the gateway wrote, every
span (names, attributes, events, status), the webhook bodies, the admin API's answers (runs, timelines, DLQ, the
``/events`` feed), the CLI's output, and every answer the callers got (problem documents and headers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.cli import main
from gateway.observability.logs import JsonFormatter
from tests.conftest import TOKEN, eventually, free_port, gateway_config

SECRETS = {
    "header": "sk-HEADER-5f1e",
    "authorization": "tok-AUTHZ-77c2",
    "query": "sk-QUERY-a9d0",
    "query_token": "tok-QUERY-3b81",
    "body": "sk-BODY-c4e7",
    "answer": "sk-ANSWER-0d6a",
}
HEADERS = {"X-Api-Key": SECRETS["header"], "Authorization": f"Bearer {SECRETS['authorization']}"}
QUERY = f"?api_key={SECRETS['query']}&token={SECRETS['query_token']}&page=2"
VISIBLE = "visible-7e2a"
"""A value next to the secrets that must be kept: proves each place searched really holds the handoffs."""
BODY = {"task": VISIBLE, "secret": SECRETS["body"]}
ANSWER = {"result": VISIBLE, "secret": SECRETS["answer"]}
REDACT = ["/secret"]

SECRET_TYPED = {"type": "object", "properties": {"secret": {"type": "integer"}}}
"""Every secret here is a string, so each violation at ``/secret`` (or at the root) quotes it."""
LEAKY_REQUEST = {
    "body": {**SECRET_TYPED, "minProperties": 5},
    "headers": {"properties": {"x-api-key": {"maxLength": 3}}},
    "query": {"properties": {"api_key": {"maxLength": 3}, "token": {"type": "integer"}}},
}
CONTRACTS = [
    {"id": "agent.ok", "route": "agent", "operation": {"method": "POST", "path": "/ok"},
     "request": {"body": {"type": "object"}}, "responses": {"200": {"type": "object"}}},
    {"id": "agent.strict", "route": "agent", "operation": {"method": "POST", "path": "/strict"},
     "request": LEAKY_REQUEST},
    {"id": "agent.answer", "route": "agent", "operation": {"method": "POST", "path": "/answer"},
     "request": {"body": {"type": "object"}}, "responses": {"200": {**SECRET_TYPED, "minProperties": 5}}},
    {"id": "esc.answer", "route": "esc", "operation": {"method": "POST", "path": "/answer"},
     "request": {"body": {"type": "object"}}, "responses": {"200": SECRET_TYPED}},
]  # fmt: skip


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log record the gateway writes, formatted as it ships (JSON with every extra), at DEBUG: the access
    lines of successful handoffs included."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


async def quiet_server(aiohttp_server: Any, handler: Any) -> str:
    """A real server for the agent or the webhook receiver, without an access log: every log line the sweep
    reads is then the gateway's (the agent is entitled to the credentials it is sent; its log is not searched)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app, access_log=None)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def agent(aiohttp_server: Any) -> str:
    """An agent answering with a credential at ``/secret``, to every call."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(ANSWER)

    return await quiet_server(aiohttp_server, answer)


@pytest.fixture
async def webhook(aiohttp_server: Any) -> tuple[str, list[bytes]]:
    """A webhook receiver keeping each delivery's body and headers."""
    received: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.read() + repr(dict(request.headers)).encode())
        return web.Response(status=204)

    return await quiet_server(aiohttp_server, receive) + "/hook", received


@contextlib.asynccontextmanager
async def feed(gw: RunningGateway) -> AsyncIterator[list[bytes]]:
    """The admin ``/events`` stream, read in the background from before the traffic until the sweep."""
    chunks: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{gw.admin_url}/events", headers={"Authorization": f"Bearer {TOKEN}"})

        async def read() -> None:
            async for chunk in response.content.iter_any():
                chunks.append(chunk)

        reader = asyncio.create_task(read())
        await eventually(lambda: b"event: ready" in b"".join(chunks), what="the events feed is up")
        try:
            yield chunks
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            response.close()


async def drive(gw: RunningGateway, http: aiohttp.ClientSession) -> list[str]:
    """The handoffs, each carrying every kind of credential; what each caller got back: status, headers, and the
    body of every refusal (problem documents, the escalation's answer)."""
    calls = [
        ("agent/ok", "run-ok", 200, {"Idempotency-Key": "step-1"}),
        ("agent/strict", "run-strict", 422, {}),
        ("agent/answer", "run-answer", 502, {}),
        ("esc/answer", "run-esc", 202, {}),
        ("down/anything", "run-down", 502, {}),
    ]
    answers = []
    for path, run, status, extra in calls:
        headers = {**HEADERS, "X-Run-Id": run, **extra}
        async with http.post(f"{gw.data_url}/{path}{QUERY}", json=BODY, headers=headers) as resp:
            body = await resp.text()
            assert resp.status == status, (path, body)
            relayed = resp.status == 200  # the agent's valid answer: its caller is who the credential is for
            answers.append(f"{resp.status} {dict(resp.headers)!r} {'' if relayed else body}")
    return answers


async def admin_views(gw: RunningGateway, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What a person sees: the admin API's runs, timelines and DLQ, and the CLI's tables over them."""
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        runs = await admin.request("GET", "/runs")
        views: list[Any] = [runs, await admin.request("GET", "/dlq")]
        views += [await admin.request("GET", f"/runs/{run['run_id']}") for run in runs["runs"]]
        views += [await admin.request("GET", f"/dlq/{item['id']}") for item in views[1]["escalations"]]
    assert {run["run_id"] for run in runs["runs"]} == {"run-ok", "run-strict", "run-answer", "run-esc", "run-down"}
    capsys.readouterr()
    for command in (["runs", "show", "run-answer"], ["runs", "show", "run-strict"], ["dlq", "list"]):
        assert await asyncio.to_thread(main, [*command, "--admin-url", str(gw.admin_url)]) == 0
    return [json.dumps(view) for view in views] + [capsys.readouterr().out]


def span_texts(spans: InMemorySpanExporter) -> list[str]:
    texts = []
    for span in spans.get_finished_spans():
        events = [(e.name, dict(e.attributes or {})) for e in span.events]
        texts.append(f"{span.name} {dict(span.attributes or {})!r} {events!r} {span.status.description}")
    return texts


def sqlite_bytes(directory: Path) -> list[str]:
    """Every file the store wrote (the databases, checkpoints' own included, with their WALs), raw: what a stolen
    disk or backup holds."""
    return [path.read_bytes().decode("latin-1") for path in directory.iterdir()]


def redis_values(url: str, prefix: str) -> list[str]:
    """Every value under the gateway's prefix, whatever its type."""
    client = redis.Redis.from_url(url)
    readers = {
        b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        b"stream": lambda k: client.xrange(k),
    }  # fmt: skip
    try:
        return [f"{key!r} {readers[client.type(key)](key)!r}" for key in client.scan_iter(f"{prefix}*")]
    finally:
        client.close()


def spellings(secret: str) -> list[str]:
    """The secret verbatim and as it reads inside base64 at each of the three alignments (stored DLQ bodies and
    the Redis stream's are base64): the characters that depend on the secret's bytes alone."""
    found = [secret]
    for offset, start in ((0, 0), (1, 2), (2, 3)):
        size = offset + len(secret)
        encoded = base64.b64encode(b"\0" * offset + secret.encode()).decode()
        found.append(encoded[start : 4 * (size // 3) + size % 3])
    return found


def leaks(places: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each place, the secrets found in it (by name), verbatim or base64-encoded."""
    found = {
        place: [name for name, secret in SECRETS.items()
                if any(form in text for text in texts for form in spellings(secret))]
        for place, texts in places.items()
    }  # fmt: skip
    return {place: names for place, names in found.items() if names}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_no_credential_is_kept_or_shown_anywhere(
    backend: str, make_gateway: Any, agent: str, spans: InMemorySpanExporter, logged: list[str],
    webhook: tuple[str, list[bytes]], http: aiohttp.ClientSession, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    monkeypatch.setenv("AGENT_GATEWAY_ADMIN_TOKEN", TOKEN)
    monkeypatch.setattr("gateway.cli._event_loop_policy", lambda: None)
    prefix = f"secrets-{free_port()}:"
    (tmp_path / "store").mkdir()
    store = {"path": str(tmp_path / "store" / "gateway.db")}
    if backend == "redis":
        store = {"backend": "redis", "url": request.getfixturevalue("redis_url"), "prefix": prefix}
    routes = [{"name": "agent", "upstream": agent}, {"name": "esc", "upstream": agent},
              {"name": "down", "upstream": f"http://127.0.0.1:{free_port()}"}]  # fmt: skip
    audit = {"redact": REDACT, "payloads": True, "flush_interval": 0.05}
    gw: RunningGateway = await make_gateway(gateway_config(routes, store=store, audit=audit))
    policy = {"id": "esc", "attach": {"route": "esc"}, "failure_modes": {"response_invalid": "escalate"},
              "escalation": {"respond_status": 202, "webhook": {"url": webhook[0]}}}  # fmt: skip
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("POST", "/contracts", body={"contracts": CONTRACTS})
        await admin.request("PUT", "/policies/esc", body=policy)
    async with feed(gw) as events:
        answers = await drive(gw, http)
        await eventually(lambda: webhook[1], what="the webhook delivered")
        shown = await admin_views(gw, capsys)
        await eventually(lambda: b"event: dlq" in b"".join(events), what="the feed announced the DLQ item")
    kept = sqlite_bytes(tmp_path / "store") if backend == "sqlite" else redis_values(store["url"], prefix)
    places = {
        "store": kept, "logs": logged, "spans": span_texts(spans), "webhook": [b.decode() for b in webhook[1]],
        "admin and CLI": shown, "events feed": [b"".join(events).decode()], "answers to callers": answers,
    }  # fmt: skip
    for place, texts in places.items():  # each place really holds the handoffs: the sweep cannot pass vacuously
        assert any(VISIBLE in text or "run-esc" in text for text in texts), place
    assert leaks(places) == {}
