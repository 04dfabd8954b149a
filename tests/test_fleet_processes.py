"""Issue 13 end to end: two real ``agent-gateway serve`` processes on one store, as a fleet of sidecars runs.

tests/test_fleet.py and tests/test_outbox.py start both gateways inside the test process; here each gateway is a
process of its own (its own pid, so its own sidecar id, event loop and store connections), sharing only the store:
a real redis-server, or one SQLite file (two processes on one host). Both read the same contract and policy
files (``contract_dirs``/``policy_dirs``), as replicas of one deployment do, so neither depends on the other's
admin API or on a change feed to know the policy.

- A breaker with ``sharing: fleet`` tripped through process A fails fast on process B without calling the agent.
- An escalation webhook that process A could not deliver is delivered by process B after A has stopped: signed,
  under one ``Webhook-Id`` for every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.policies.outbox import SIGNATURE_HEADER, verify
from tests import test_outbox
from tests.conftest import TOKEN, Upstream, contract, eventually, free_port, scripted
from tests.test_outbox import SECRET, Receiver, escalating
from tests.test_startup import BASE_ENV, CLI

BREAKER = "route:agent"
BREAKING = {"id": "p", "attach": {"route": "agent"},
            "breaker": {"sharing": "fleet", "consecutive_failures": 2, "wait_in_open_seconds": 60}}  # fmt: skip
TASK = {"task": "t", "priority": 1}
STARTUP = 30.0
"""Bound on a process coming up (imports and store schema on a loaded 2-core machine): a hang guard only."""


@dataclass
class Serve:
    """One running ``agent-gateway serve``, its JSON log (stderr) in a file."""

    process: asyncio.subprocess.Process
    log: Path
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def said(self, prefix: str) -> bool:
        """Has the process logged a line starting with ``prefix``? (A line still being written is skipped.)"""
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                if str(json.loads(line).get("message", "")).startswith(prefix):
                    return True
        return False

    async def admin(self, method: str, path: str) -> Any:
        async with AdminClient(f"http://127.0.0.1:{self.admin_port}", TOKEN) as client:
            return await client.request(method, path)

    async def breaker_is(self, state: str) -> bool:
        return bool((await self.admin("GET", f"/breakers/{BREAKER}"))["state"] == state)

    async def webhook(self, item_id: str) -> dict[str, Any]:
        return dict((await self.admin("GET", f"/dlq/{item_id}"))["webhook"])

    async def stop(self) -> int:
        """SIGTERM, as an orchestrator stops a pod; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), STARTUP)


@dataclass
class Fleet:
    """Starts ``serve`` processes that share one store, one route to the test's agent and the same documents."""

    root: Path
    store: dict[str, str]
    agent: str
    started: list[Serve] = field(default_factory=list)
    launched: int = 0

    def documents(self, *, contract_doc: dict[str, Any], policy: dict[str, Any]) -> None:
        """The contract and policy every process of the fleet loads at start-up."""
        for kind, document in (("contracts", contract_doc), ("policies", policy)):
            (self.root / kind).mkdir(exist_ok=True)
            (self.root / kind / f"{document['id']}.yaml").write_text(yaml.safe_dump(document))

    async def start(self) -> Serve:
        """One more process, started and serving (its data plane and admin API listening)."""
        index = self.launched  # counted before any await: replicas may start concurrently
        self.launched += 1
        port, admin_port = free_port(), free_port()
        settings = self.root / f"gateway-{index}.yaml"
        settings.write_text(
            yaml.safe_dump({
                "listen": {"host": "127.0.0.1", "port": port},
                "admin": {"host": "127.0.0.1", "port": admin_port},
                "store": self.store, "routes": [{"name": "agent", "upstream": self.agent}],
                "contract_dirs": ["contracts"], "policy_dirs": ["policies"], "watch_interval": 0,
                "log_format": "json",
            })
        )  # fmt: skip
        log = self.root / f"gateway-{index}.log"
        env = {**BASE_ENV, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN, "HOOK_SECRET": SECRET.decode()}
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *CLI, "serve", "--config", str(settings), env=env, stderr=out, cwd="/"
            )
        serve = Serve(process, log, port, admin_port)
        self.started.append(serve)
        await eventually(
            lambda: serve.said("serving data plane on") or process.returncode is not None,
            within=STARTUP, what=f"gateway {index} serving",
        )  # fmt: skip
        assert process.returncode is None, log.read_text()
        return serve

    async def close(self) -> None:
        """Every process still running is terminated (and killed if it does not exit)."""
        for serve in self.started:
            if serve.process.returncode is None:
                serve.process.terminate()
                try:
                    await asyncio.wait_for(serve.process.wait(), 10)
                except TimeoutError:
                    serve.process.kill()
                    await serve.process.wait()


# The fixtures of tests/test_outbox.py, by name: ``store`` (a redis-server of this test's, or one SQLite file,
# each test running with both) and ``receiver`` (a webhook receiver answering 500 while ``failing``).
store = test_outbox.store
receiver = test_outbox.receiver


@pytest.fixture
async def fleet(tmp_path: Path, store: dict[str, str], upstream: Upstream) -> AsyncIterator[Fleet]:
    started = Fleet(tmp_path, store, upstream.url)
    try:
        yield started
    finally:
        await started.close()


async def post(serve: Serve) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(f"{serve.url}/agent/tasks", json=TASK) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_breaker_opened_through_one_process_is_honoured_by_the_other(fleet: Fleet, upstream: Upstream) -> None:
    fleet.documents(contract_doc=contract(responses={}), policy=BREAKING)
    upstream.handler = scripted((200, {"result": "ok"}))
    first, second = await asyncio.gather(fleet.start(), fleet.start())  # replicas starting together
    assert [(await post(gw))[0] for gw in (first, second)] == [200, 200]  # each has used (so shows) the breaker

    upstream.handler = scripted((503, {"error": "dead"}))  # the agent dies
    assert [(await post(first))[0] for _ in range(2)] == [503, 503]  # relayed; the second failure trips it
    assert await first.breaker_is("open")
    await eventually(
        lambda: second.breaker_is("open"), ignoring=(AdminAPIError,), what="the second process adopting the open"
    )
    hits = len(upstream.seen)
    assert hits == 4

    status, problem = await post(second)

    assert status == 503
    assert problem["type"].endswith("/breaker_open")
    assert len(upstream.seen) == hits  # failed fast: the agent was not called
    snapshot = await second.admin("GET", f"/breakers/{BREAKER}")
    assert snapshot["fleet_view"] == "shared"


async def test_a_webhook_failing_when_its_process_stops_is_delivered_by_the_next(
    fleet: Fleet, upstream: Upstream, receiver: Receiver
) -> None:
    fleet.documents(contract_doc=contract(), policy=escalating(receiver))
    upstream.handler = scripted((200, {"result": 7}))  # breaks the contract: escalated
    first = await fleet.start()
    status, answer = await post(first)
    assert status == 202
    item_id = answer["escalation_id"]
    # Two failed attempts stored: the next is a backoff of 1 s away, so the SIGTERM lands between attempts (an
    # attempt cut off mid-post keeps its delivery leased to the stopped process for 30 s, longer than we wait).
    await eventually(lambda: _attempts(first, item_id, 2), what="two failed attempts stored by the first process")

    assert await first.stop() == 0
    failed = len(receiver.deliveries)
    receiver.failing = False
    second = await fleet.start()

    delivered = await eventually(
        lambda: _delivered(second, item_id), what="the second process delivering (no attempt left leased?)"
    )

    assert delivered["attempts"] == failed + 1 == len(receiver.deliveries)
    assert len(set(receiver.ids())) == 1  # one idempotency id across both processes
    for body, headers in receiver.deliveries:
        assert verify(SECRET, headers[SIGNATURE_HEADER], body)
        assert json.loads(body)["escalation"]["id"] == item_id


async def _attempts(serve: Serve, item_id: str, attempts: int) -> bool:
    return bool((await serve.webhook(item_id))["attempts"] >= attempts)


async def _delivered(serve: Serve, item_id: str) -> dict[str, Any] | None:
    webhook = await serve.webhook(item_id)
    return webhook if webhook["status"] == "delivered" else None
