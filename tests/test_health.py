"""The health listener: probes and metrics with no admin token, readiness that follows the store and the agent,
and a drain that reads "not ready" while the process stays "alive"."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import RunningGateway, start_gateway
from gateway.config import ConfigError, load_config
from gateway.errors import PROBLEM_CONTENT_TYPE
from tests.conftest import (
    Handler,
    RedisServer,
    Upstream,
    eventually,
    eventually_blocking,
    free_port,
    gateway_config,
    replying,
)
from tests.test_config import KUBERNETES_ENV
from tests.test_startup import BASE_ENV, CLI

HEALTH = {"host": "127.0.0.1", "port": 0}
MakeGateway = Callable[..., Awaitable[RunningGateway]]
MakeUpstream = Callable[[Handler | None], Awaitable[Upstream]]


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    async with http.get(url) as answer:
        body = await answer.read()
        parsed = await answer.json(content_type=None) if answer.content_type.endswith("json") else body.decode()
        return answer.status, answer.content_type, parsed


def health_url(gateway: RunningGateway) -> str:
    assert gateway.health_url is not None
    return gateway.health_url


async def test_probes_and_metrics_answer_without_an_admin_token(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    config = gateway_config([{"name": "agent", "upstream": upstream.url}], admin={"token": None}, health=HEALTH)
    gateway = await make_gateway(config)
    assert gateway.admin_url is None  # no token: no admin API, and the probes do not care
    base = health_url(gateway)

    assert await get(http, f"{base}/healthz") == (200, "application/json", {"status": "ok"})
    status, _, ready = await get(http, f"{base}/readyz")
    assert (status, ready["checks"]) == (200, {"started": "ok", "store": "ok"})

    async with http.post(f"{gateway.data_url}/agent/tasks", json={"x": 1}) as answer:
        assert answer.status == 200
    status, content_type, text = await get(http, f"{base}/metrics")
    assert (status, content_type) == (200, "text/plain")
    assert 'agent_gateway_requests_total{operation="' in text
    assert 'route="agent"' in text


async def test_unknown_paths_are_problem_documents(make_gateway: MakeGateway, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway(gateway_config([], health=HEALTH))
    status, content_type, problem = await get(http, f"{health_url(gateway)}/routes")
    assert (status, content_type, problem["status"]) == (404, PROBLEM_CONTENT_TYPE, 404)
    async with http.post(f"{health_url(gateway)}/readyz") as answer:
        assert (answer.status, answer.content_type) == (405, PROBLEM_CONTENT_TYPE)


async def test_readiness_fails_while_the_store_is_down_and_recovers(
    make_gateway: MakeGateway, redis_server: RedisServer, http: aiohttp.ClientSession
) -> None:
    config = gateway_config([], store={"backend": "redis", "url": redis_server.url}, health=HEALTH)
    gateway = await make_gateway(config)
    readyz = f"{health_url(gateway)}/readyz"
    assert (await get(http, readyz))[0] == 200

    redis_server.kill()
    _, content_type, problem = await eventually(
        lambda: _status_is(http, readyz, 503), what="/readyz fails with the store down"
    )
    assert content_type == PROBLEM_CONTENT_TYPE
    assert problem["type"].endswith("/not-ready")
    assert problem["checks"]["started"] == "ok"
    assert problem["checks"]["store"] != "ok"
    assert (await get(http, f"{health_url(gateway)}/healthz"))[0] == 200  # alive: no restart for a store outage

    redis_server.start()
    await eventually(lambda: _status_is(http, readyz, 200), what="/readyz recovers with the store")


async def _status_is(http: aiohttp.ClientSession, url: str, status: int) -> tuple[int, str, Any] | None:
    answer = await get(http, url)
    return answer if answer[0] == status else None


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (replying(b'{"status": "ok"}'), "ok"),
        (replying(b"starting", status=503, content_type="text/plain"), "HTTP 503"),
        (None, "unreachable (ClientConnectorError)"),
    ],
)
async def test_readiness_follows_the_agents_own_health(
    make_gateway: MakeGateway,
    make_upstream: MakeUpstream,
    http: aiohttp.ClientSession,
    agent: Handler | None,
    expected: str,
) -> None:
    agent_url = f"{(await make_upstream(agent)).url}/healthz" if agent else f"http://127.0.0.1:{free_port()}/healthz"
    gateway = await make_gateway(gateway_config([], health={**HEALTH, "agent_url": agent_url}))
    status, _, document = await get(http, f"{health_url(gateway)}/readyz")
    assert document["checks"]["agent"] == expected
    assert status == (200 if expected == "ok" else 503)


async def test_a_draining_gateway_is_alive_but_not_ready(
    make_upstream: MakeUpstream, http: aiohttp.ClientSession
) -> None:
    """SIGTERM → close(): while an in-flight request finishes, /readyz says 503 and /healthz 200, so the kubelet
    takes the pod out of the Service without restarting the gateway mid-drain."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response({"result": "late but whole"})

    async def call(url: str) -> tuple[int, Any]:
        async with http.post(url, json={}) as answer:
            return answer.status, await answer.json()

    agent = await make_upstream(slow)
    gateway = await start_gateway(gateway_config([{"name": "agent", "upstream": agent.url}], health=HEALTH))
    base = health_url(gateway)
    in_flight = asyncio.create_task(call(f"{gateway.data_url}/agent/work"))
    await arrived.wait()

    closing = asyncio.create_task(gateway.close())
    await eventually(lambda: _status_is(http, f"{base}/readyz", 503), what="/readyz reports the drain")
    assert await get(http, f"{base}/healthz") == (200, "application/json", {"status": "ok"})
    release.set()
    assert await in_flight == (200, {"result": "late but whole"})
    await closing
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, f"{base}/healthz")


def test_agent_url_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError, match=r"AGENT_GATEWAY_HEALTH__AGENT_URL: health.agent_url: .*http"):
        load_config(environ={"AGENT_GATEWAY_HEALTH__AGENT_URL": "localhost:8000/healthz"})


def service_links(service: str, ip: str, ports: dict[str, int]) -> dict[str, str]:
    """The variables the kubelet injects into every pod for a Service (``enableServiceLinks`` defaults to true)."""
    prefix = service.upper().replace("-", "_")
    first = next(iter(ports.values()))
    links = {
        f"{prefix}_SERVICE_HOST": ip,
        f"{prefix}_SERVICE_PORT": str(first),
        f"{prefix}_PORT": f"tcp://{ip}:{first}",
    }
    for name, port in ports.items():
        tcp = f"{prefix}_PORT_{port}_TCP"
        links |= {f"{prefix}_SERVICE_PORT_{name.upper()}": str(port), tcp: f"tcp://{ip}:{port}"}
        links |= {f"{tcp}_PROTO": "tcp", f"{tcp}_PORT": str(port), f"{tcp}_ADDR": ip}
    return links


def test_serve_answers_probes_in_a_pod_with_service_links_and_no_admin_token(tmp_path: Path) -> None:
    """`agent-gateway serve` as the image runs it, in a namespace with Services named gateway, agent-gateway,
    agent-gateway-health and agent-gateway-redis (all of whose variables share our prefix), and no admin token."""
    data_port, health_port = free_port(), free_port()
    env = {
        **BASE_ENV, **KUBERNETES_ENV,
        **service_links("agent-gateway-health", "10.0.0.3", {"health": 9902}),
        **service_links("agent-gateway-redis", "10.0.0.4", {"redis": 6379}),
        "AGENT_GATEWAY_HEALTH__PORT": str(health_port), "AGENT_GATEWAY_HEALTH__HOST": "127.0.0.1",
        "AGENT_GATEWAY_LISTEN__HOST": "127.0.0.1", "AGENT_GATEWAY_STORE__PATH": str(tmp_path / "gw.db"),
    }  # fmt: skip
    process = subprocess.Popen([*CLI, "serve", "--port", str(data_port)], env=env, stderr=subprocess.PIPE, text=True)

    def probe(path: str) -> Any:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}{path}", timeout=1) as answer:
            return answer.status, json.load(answer)

    try:
        assert eventually_blocking(lambda: probe("/healthz"), within=30, ignoring=(OSError,)) == (200, {"status": "ok"})
        status, ready = probe("/readyz")
        assert (status, ready["checks"]) == (200, {"started": "ok", "store": "ok"})
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "admin API disabled" in errors
    assert "Traceback" not in errors
