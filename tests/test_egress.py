"""The egress listener: two "pods" on loopback, each a real gateway, agent A's outgoing call through A's egress
port to B's data port to agent B. The source is A's configured name on both gateways whatever header A sends,
the run is one run carried by W3C baggage, and a call that breaks B's contract never leaves pod A."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway
from gateway.config import ConfigError, load_config
from gateway.policies.escalation import OUTCOME_PATH
from tests.conftest import TOKEN, Upstream, contract, free_port, gateway_config

AGENT_A = "planner-a"
TASK = {"task": "draft the plan", "priority": 1}

MakeGateway = Callable[..., Awaitable[RunningGateway]]


async def two_pods(make_gateway: MakeGateway, agent_b: Upstream) -> tuple[RunningGateway, RunningGateway]:
    """Pod B: its gateway's default route is agent B. Pod A: route ``b`` leads to B's gateway, egress as A."""
    pod_b = await make_gateway(gateway_config([{"name": "agent-b", "upstream": agent_b.url, "default": True}]))
    pod_a = await make_gateway(
        gateway_config([{"name": "b", "upstream": pod_b.data_url}], egress={"port": 0, "agent": AGENT_A})
    )
    return pod_a, pod_b


async def handoffs(gateway: RunningGateway, run_id: str) -> list[dict[str, Any]]:
    """The run's handoffs as this gateway recorded them; none when it never saw the run."""
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        try:
            run = await admin.request("GET", f"/runs/{run_id}")
        except AdminAPIError as exc:
            if exc.status == 404:
                return []
            raise
    found: list[dict[str, Any]] = run["handoffs"]
    return found


@pytest.mark.parametrize("sent", [{}, {"X-Agent-Name": "orchestrator"}], ids=["no-name", "forged-name"])
async def test_agent_a_is_the_source_on_both_gateways_in_one_run_carried_by_baggage(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession, spans: InMemorySpanExporter,
    sent: dict[str, str],
) -> None:  # fmt: skip
    pod_a, pod_b = await two_pods(make_gateway, upstream)
    assert pod_a.egress_url is not None

    async with http.post(
        f"{pod_a.egress_url}/b/tasks", json=TASK, headers={**sent, "baggage": "tenant=acme,run.id=run-7"}
    ) as answer:
        assert answer.status == 200
        assert answer.headers["X-Run-Id"] == "run-7"
        assert answer.headers["X-Contract-Verdict"] == "unchecked"

    [seen] = upstream.seen
    assert seen.path == "/tasks"
    assert seen.headers["X-Agent-Name"] == AGENT_A
    assert seen.headers["X-Run-Id"] == "run-7"
    assert seen.headers["baggage"] == "tenant=acme,run.id=run-7"
    on_a, on_b = await handoffs(pod_a, "run-7"), await handoffs(pod_b, "run-7")
    assert [(h["source"], h["target"], h["status"]) for h in on_a] == [(AGENT_A, "b", 200)]
    assert [(h["source"], h["target"], h["status"]) for h in on_b] == [(AGENT_A, "agent-b", 200)]
    servers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.attributes["agent_gateway.agent.source"] for s in servers if s.attributes] == [AGENT_A, AGENT_A]
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 1  # one trace across both pods


async def test_a_call_breaking_the_peers_contract_is_refused_before_it_leaves_the_pod(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    pod_a, pod_b = await two_pods(make_gateway, upstream)
    async with AdminClient(pod_a.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(route="b"))

    async with http.post(f"{pod_a.egress_url}/b/tasks", json={"task": ""}, headers={"X-Run-Id": "run-8"}) as answer:
        problem = await answer.json()
        assert answer.status == 422
        assert answer.headers["X-Run-Id"] == "run-8"  # a refusal is stamped like any answer
        assert answer.headers["X-Contract-Verdict"] == "request_invalid; contract=agent.tasks; version=1"
    assert problem["type"].endswith("/request_invalid")
    assert {v["pointer"] for v in problem["violations"]} == {"/task", ""}

    assert upstream.seen == []
    assert await handoffs(pod_b, "run-8") == []
    [refused] = await handoffs(pod_a, "run-8")
    assert (refused["source"], refused["target"], refused["verdict"]) == (AGENT_A, "b", "request_invalid")


async def test_a_valid_call_under_the_peers_contract_passes_and_is_checked_on_the_egress_side(
    make_gateway: MakeGateway, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    agent_b = await make_upstream(None)  # echoes the task back: a response the contract refuses
    pod_a, _ = await two_pods(make_gateway, agent_b)
    async with AdminClient(pod_a.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=contract(route="b"))

    async with http.post(f"{pod_a.egress_url}/b/tasks", json=TASK) as answer:
        problem = await answer.json()
    assert answer.status == 502
    assert problem["direction"] == "response"
    assert len(agent_b.seen) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"baggage": "run.id=from-baggage", "X-Run-Id": "from-header"}, "from-baggage"),
        ({"baggage": "tenant=acme", "X-Run-Id": "from-header"}, "from-header"),
        ({"baggage": "run.id=r%201"}, "r 1"),
    ],
    ids=["baggage-wins", "header-without-run-in-baggage", "percent-decoded"],
)
async def test_the_egress_run_id_comes_from_baggage_then_x_run_id(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession,
    headers: dict[str, str], expected: str,
) -> None:  # fmt: skip
    gateway = await make_gateway(
        gateway_config([{"name": "agent", "upstream": upstream.url}], egress={"port": 0, "agent": AGENT_A})
    )
    async with http.get(f"{gateway.egress_url}/agent/x", headers=headers) as answer:
        assert answer.headers["X-Run-Id"] == expected
    assert upstream.seen[0].headers["X-Run-Id"] == expected


async def test_without_a_run_id_the_egress_side_starts_a_run_and_puts_it_in_baggage(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(
        gateway_config([{"name": "agent", "upstream": upstream.url}], egress={"port": 0, "agent": AGENT_A})
    )
    async with http.get(f"{gateway.egress_url}/agent/x") as answer:
        run_id = answer.headers["X-Run-Id"]
    assert upstream.seen[0].headers["baggage"] == f"run.id={run_id}"


async def test_the_data_port_still_trusts_the_callers_name(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(
        gateway_config([{"name": "agent", "upstream": upstream.url}], egress={"port": 0, "agent": AGENT_A})
    )
    async with http.get(f"{gateway.data_url}/agent/x", headers={"X-Agent-Name": "critic", "X-Run-Id": "r9"}):
        pass
    assert [h["source"] for h in await handoffs(gateway, "r9")] == ["critic"]
    assert upstream.seen[0].headers["X-Agent-Name"] == "critic"


async def test_a_header_that_cannot_be_forwarded_intact_is_a_problem_document(
    make_gateway: MakeGateway, upstream: Upstream
) -> None:
    gateway = await make_gateway(
        gateway_config([{"name": "agent", "upstream": upstream.url}], egress={"port": 0, "agent": AGENT_A})
    )
    assert gateway.egress_runner is not None
    port = gateway.egress_runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /agent/x HTTP/1.1\r\nHost: a\r\nX-Note: caf\xe9\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"application/problem+json" in head
    assert b"not valid UTF-8" in body
    assert upstream.seen == []


async def test_with_workers_each_worker_serves_the_egress_port(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    data_port, egress_port = free_port(), free_port()
    config = gateway_config(
        [{"name": "agent", "upstream": upstream.url}], workers=2,
        listen={"port": data_port}, egress={"port": egress_port, "agent": AGENT_A},
    )  # fmt: skip
    first, second = await make_gateway(config), await make_gateway(config)  # two workers' worth of listeners
    assert first.egress_url == second.egress_url == f"http://127.0.0.1:{egress_port}"
    async with http.get(f"http://127.0.0.1:{egress_port}/agent/x") as answer:
        assert answer.status == 200


async def test_no_egress_listener_unless_a_port_is_set(gateway: RunningGateway) -> None:
    assert gateway.egress_runner is None
    assert gateway.egress_url is None


def test_the_agent_name_comes_from_the_environment_and_is_required_with_a_port() -> None:
    downward = {"AGENT_GATEWAY_EGRESS__PORT": "8081", "AGENT_GATEWAY_EGRESS__AGENT": AGENT_A}
    egress = load_config(environ=downward).egress
    assert (egress.host, egress.port, egress.agent) == ("127.0.0.1", 8081, AGENT_A)
    with pytest.raises(ConfigError, match="egress: agent is required when port is set"):
        load_config(environ={"AGENT_GATEWAY_EGRESS__PORT": "8081"})
    with pytest.raises(ConfigError, match=re.escape("AGENT_GATEWAY_EGRESS__AGENT: egress.agent")):
        load_config(environ={**downward, "AGENT_GATEWAY_EGRESS__AGENT": "a\r\nX-Agent-Name: b"})


async def test_an_escalated_call_is_polled_where_it_was_asked(
    make_gateway: MakeGateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gateway = await make_gateway(
        gateway_config(
            [{"name": "agent", "upstream": upstream.url, "default": True}], egress={"port": 0, "agent": AGENT_A}
        )
    )
    async with http.get(f"{gateway.egress_url}{OUTCOME_PATH}no-such-id") as answer:
        problem = await answer.json(content_type=None)
    assert (answer.status, problem["type"].rsplit("/", 1)[-1]) == (404, "not-found")
    assert upstream.seen == []  # answered by the gateway, not relayed to the default route
