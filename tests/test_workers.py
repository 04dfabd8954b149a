"""``workers: 2`` as users run it: a real ``agent-gateway serve`` subprocess, its workers sharing one port.

Which worker answered is read from the access log: every worker tags its lines with ``worker`` (its index), and a
refusal (422) is logged at the shipped INFO level. Fresh connections spread over the workers' sockets by the
kernel's ``SO_REUSEPORT`` hash, so sending on fresh connections until both indexes appear reaches both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.admin.client import AdminClient
from tests.conftest import TOKEN, Handler, Upstream, contract, eventually, free_port
from tests.test_startup import BASE_ENV, CLI

INVALID = {"task": "", "priority": -1}
"""Breaks the request schema of :func:`tests.conftest.contract` twice."""
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@dataclass
class Fleet:
    """A running ``agent-gateway serve`` with its log (stderr) in a file."""

    process: asyncio.subprocess.Process
    log: Path
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (a line still being written is skipped)."""
        entries = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def pids(self) -> dict[int, int]:
        """Each worker's pid, the latest start of each index."""
        return {
            int(m[1]): int(m[2]) for e in self.lines() if (m := STARTED.fullmatch(e["message"])) and "worker" not in e
        }

    def refusals(self, after: int = 0) -> dict[int, int]:
        """How many 422 answers each worker logged, counting log lines from index ``after`` on."""
        seen: dict[int, int] = {}
        for entry in self.lines()[after:]:
            if entry.get("http.response.status_code") == 422:
                seen[entry["worker"]] = seen.get(entry["worker"], 0) + 1
        return seen

    def said(self, message: str) -> bool:
        return any(entry["message"] == message for entry in self.lines())


@pytest.fixture
async def start_fleet(
    tmp_path: Path, make_upstream: Callable[[Handler | None], Awaitable[Upstream]]
) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    started: list[Fleet] = []

    async def start(handler: Handler | None = None, *, port: int | None = None) -> Fleet:
        upstream = await make_upstream(handler)
        port, admin_port, log = port or free_port(), free_port(), tmp_path / f"gateway-{len(started)}.log"
        settings = tmp_path / "gateway.yaml"
        settings.write_text(
            yaml.safe_dump({
                "listen": {"host": "127.0.0.1", "port": port},
                "admin": {"host": "127.0.0.1", "port": admin_port},
                "store": {"path": str(tmp_path / "gw.db")},
                "routes": [{"name": "agent", "upstream": upstream.url}],
                "workers": 2, "worker_poll_interval": 0.05, "log_format": "json",
            })
        )  # fmt: skip
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *CLI, "serve", "--config", str(settings),
                env={**BASE_ENV, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN}, stderr=out, cwd="/",
            )  # fmt: skip
        fleet = Fleet(process, log, port, admin_port)
        started.append(fleet)
        return fleet

    yield start
    for fleet in started:
        if fleet.process.returncode is None:
            fleet.process.kill()  # the supervisor only: its workers notice and drain (see gateway.workers)
            await fleet.process.wait()


async def serving(fleet: Fleet) -> Fleet:
    await eventually(lambda: fleet.said("serving with 2 workers") or fleet.process.returncode is not None, within=30)
    assert fleet.process.returncode is None, fleet.log.read_text()
    return fleet


async def fresh_post(fleet: Fleet, body: Any) -> int:
    """One request on a connection of its own (a new connection may land on either worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(fleet.url + "/agent/tasks", json=body) as got,
    ):
        await got.read()
        return got.status


async def register(fleet: Fleet) -> None:
    async with AdminClient(fleet.admin_url, TOKEN) as admin:
        await admin.request("POST", "/contracts", body={"contracts": [contract()]})


async def until_both_refused(fleet: Fleet, after: int = 0) -> list[int]:
    """Send invalid bodies on fresh connections until both workers have logged a 422; the statuses seen."""
    statuses: list[int] = []

    async def both() -> bool:
        statuses.append(await fresh_post(fleet, INVALID))
        return len(fleet.refusals(after)) == 2

    await eventually(both, within=30, what="a 422 logged by each worker")
    return statuses


async def test_a_contract_registered_through_the_admin_api_is_enforced_by_every_worker(
    start_fleet: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await serving(await start_fleet())
    assert await fresh_post(fleet, INVALID) == 200  # nothing enforced yet: the agent echoes it

    await register(fleet)
    await until_both_refused(fleet)  # a worker may still pass one during its first poll

    assert {await fresh_post(fleet, INVALID) for _ in range(20)} == {422}  # now every worker refuses every one
    assert set(fleet.refusals()) == {0, 1}


async def test_metrics_sum_the_requests_of_every_worker(start_fleet: Callable[..., Awaitable[Fleet]]) -> None:
    fleet = await serving(await start_fleet())
    await register(fleet)
    await until_both_refused(fleet)
    sent = len(await until_both_refused(fleet, after=len(fleet.lines())))  # both workers counted some of these

    authorized = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=authorized) as http, http.get(fleet.admin_url + "/metrics") as got:
        text = await got.text()
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("agent_gateway_requests_total{") and 'status="422"' in line
    ]
    assert sum(counted) >= sent  # the first round's refusals are counted too
    assert len(counted) == 1  # one series: the workers' files are summed, not listed per process
    refused = sum(fleet.refusals().values())
    assert sum(counted) == refused


async def test_a_killed_worker_is_restarted_and_enforces_the_contracts(
    start_fleet: Callable[..., Awaitable[Fleet]],
) -> None:
    fleet = await serving(await start_fleet())
    await register(fleet)
    killed = fleet.pids()[1]

    os.kill(killed, signal.SIGKILL)

    await eventually(lambda: fleet.pids()[1] != killed, within=30, what="worker 1 started again")
    restarted = len(fleet.lines())
    statuses = await until_both_refused(fleet, after=restarted)
    assert set(statuses) == {422}  # the new worker read the contract at start-up
    assert fleet.process.returncode is None


async def test_sigterm_drains_in_flight_requests_and_exits_0(start_fleet: Callable[..., Awaitable[Fleet]]) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response({"result": "done"})

    fleet = await serving(await start_fleet(slow))
    in_flight = asyncio.create_task(fresh_post(fleet, {"task": "t", "priority": 1}))
    await arrived.wait()

    fleet.process.send_signal(signal.SIGTERM)
    await eventually(lambda: fleet.said("draining 2 workers"))
    release.set()

    assert await in_flight == 200
    assert await asyncio.wait_for(fleet.process.wait(), 30) == 0
    with socket.socket() as probe:  # every worker closed its socket
        assert probe.connect_ex(("127.0.0.1", fleet.port)) != 0


async def test_a_worker_that_cannot_start_stops_the_supervisor_with_status_1(
    start_fleet: Callable[..., Awaitable[Fleet]],
) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: no worker can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fleet = await start_fleet(port=taken.getsockname()[1])
        status = await asyncio.wait_for(fleet.process.wait(), 30)
    assert status == 1
    assert fleet.said("worker 0 exited before serving; stopping the others")
