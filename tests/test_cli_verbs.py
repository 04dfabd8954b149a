"""Every admin verb of the CLI against a live gateway, through the real ``main([...])``: a table for a person by
default, the admin API's own JSON with ``--json``, and colour only on a terminal without ``NO_COLOR``."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.cli import main
from gateway.cli_format import colour_wanted
from tests.conftest import TOKEN, Upstream, contract, replying

POLICY = {"id": "ops", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
          "escalation": {"respond_status": 202}, "breaker": {"minimum_calls": 100}}  # fmt: skip


class CLI:
    """``main([...])`` in a worker thread (it runs its own event loop while the test's serves the gateway)."""

    def __init__(self, gateway: RunningGateway, capsys: pytest.CaptureFixture[str]) -> None:
        self.admin_url, self.capsys = str(gateway.admin_url), capsys

    async def __call__(self, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        got = await asyncio.to_thread(main, [*args, "--admin-url", self.admin_url])
        out, err = self.capsys.readouterr()
        assert got == code, err
        return out

    async def json(self, *args: str) -> object:
        return json.loads(await self(*args, "--json"))


@pytest.fixture
def cli(gateway: RunningGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    monkeypatch.setenv("AGENT_GATEWAY_ADMIN_TOKEN", TOKEN)
    monkeypatch.setattr("gateway.cli._event_loop_policy", lambda: None)  # keep the tests' own loop policy
    return CLI(gateway, capsys)


def rows(out: str) -> list[list[str]]:
    """A table's lines split into cells (cells never contain two spaces)."""
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in out.splitlines()]


async def test_contracts_and_policies_read_as_tables(cli: CLI, admin: AdminClient, tmp_path: Path) -> None:
    document = tmp_path / "tasks.yaml"
    document.write_text(json.dumps(contract()))
    assert rows(await cli("contracts", "push", str(document))) == [["ID", "VERSION", "ACTIVE"],
                                                                    ["agent.tasks", "1", "True"]]  # fmt: skip
    assert rows(await cli("contracts", "push", str(document), "--no-activate"))[1] == ["agent.tasks", "2", "False"]
    assert rows(await cli("contracts", "list")) == [["ID", "ACTIVE", "LATEST"], ["agent.tasks", "1", "2"]]
    assert await cli.json("contracts", "list") == await admin.request("GET", "/contracts")
    shown = await cli("contracts", "show", "agent.tasks", "--version", "2")
    assert rows(shown)[:3] == [["id", "agent.tasks"], ["version", "2"], ["active", "False"]]
    assert "operation:\n  method: POST\n  path: /tasks" in shown  # the document as the YAML a person writes
    assert await cli.json("contracts", "show", "agent.tasks") == await admin.request("GET", "/contracts/agent.tasks")
    assert rows(await cli("contracts", "activate", "agent.tasks", "2"))[1] == ["agent.tasks", "2", "True"]

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"task": "", "priority": "high"}))
    invalid = await cli("contracts", "validate", "agent.tasks", str(payload), code=1)
    assert rows(invalid)[0] == ["agent.tasks v2 request: invalid"]
    assert rows(invalid)[1] == ["POINTER", "KEYWORD", "MESSAGE"]
    assert sorted(row[:2] for row in rows(invalid)[2:]) == [["/priority", "type"], ["/task", "minLength"]]
    payload.write_text(json.dumps({"task": "t", "priority": 1}))
    assert await cli("contracts", "validate", "agent.tasks", str(payload)) == "agent.tasks v2 request: valid\n"

    policy = tmp_path / "ops.yaml"
    policy.write_text(json.dumps(POLICY))
    assert rows(await cli("policies", "push", str(policy)))[1] == ["ops", "1", "True"]
    assert rows(await cli("policies", "list"))[1] == ["ops", "1", "1"]
    assert "escalation:\n  respond_status: 202" in await cli("policies", "show", "ops")
    assert rows(await cli("policies", "activate", "ops", "1"))[1] == ["ops", "1", "True"]


async def test_routes_read_as_tables(cli: CLI, admin: AdminClient, upstream: Upstream) -> None:
    assert rows(await cli("routes", "list")) == [["NAME", "PREFIX", "UPSTREAM", "DEFAULT"],
                                                 ["agent", "/agent", upstream.url, "False"]]  # fmt: skip
    put = await cli("routes", "put", "other", "--upstream", upstream.url, "--prefix", "/o")
    assert rows(put)[1] == ["other", "/o", upstream.url, "False"]
    assert await cli.json("routes", "list") == await admin.request("GET", "/routes")
    assert rows(await cli("routes", "delete", "other")) == [["DELETED"], ["other"]]
    assert [r["name"] for r in (await admin.request("GET", "/routes"))["routes"]] == ["agent"]


async def escalate(upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession, gateway: RunningGateway,
                   run: str) -> str:  # fmt: skip
    """One handoff of run ``run`` whose answer breaks the contract, escalated to the DLQ: the item's id."""

    async def invalid(request: web.Request) -> web.Response:
        return web.json_response({"result": 7})

    upstream.handler = invalid
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    await admin.request("PUT", "/policies/ops", body=POLICY)
    body = {"task": "t", "priority": 1}
    async with http.post(f"{gateway.data_url}/agent/tasks", json=body, headers={"X-Run-Id": run}) as escalated:
        return str((await escalated.json())["escalation_id"])


async def test_runs_dlq_breakers_and_stats_read_as_tables(
    cli: CLI, gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:  # fmt: skip
    first = await escalate(upstream, admin, http, gateway, "run-1")
    second = await escalate(upstream, admin, http, gateway, "run-2")

    listed = rows(await cli("runs", "list"))
    assert listed[0] == ["RUN", "HANDOFFS", "FAILURES", "FIRST", "LAST"]
    assert {tuple(row[:3]) for row in listed[1:]} == {("run-1", "1", "1"), ("run-2", "1", "1")}
    assert await cli.json("runs", "list") == await admin.request("GET", "/runs?limit=20")
    shown = await cli("runs", "show", "run-1")
    assert "violation entered at #1: unknown → agent (response_invalid" in shown
    assert await cli.json("runs", "show", "run-1") == await admin.request("GET", "/runs/run-1")

    dlq = rows(await cli("dlq", "list"))
    assert dlq[0] == ["ID", "STATUS", "REASON", "ROUTE", "CONTRACT", "CREATED"]
    assert {row[0] for row in dlq[1:]} == {first, second}
    item = await cli("dlq", "show", first)
    assert ["status", "pending"] in rows(item)
    assert ["/result", "type"] in [row[:2] for row in rows(item)]
    assert '"result": 7' in item  # the agent's answer, as JSON
    assert await cli.json("dlq", "show", first) == await admin.request("GET", f"/dlq/{first}")
    assert ["status", "discarded"] in rows(await cli("dlq", "discard", first, "--note", "not needed"))
    upstream.handler = replying(b'{"result": "fixed"}')  # the agent is fixed: replay gets a valid answer
    assert ["status", "replayed"] in rows(await cli("dlq", "replay", second))

    assert rows(await cli("breakers", "open", "route:agent"))[1][:2] == ["route:agent", "forced_open"]
    assert rows(await cli("breakers", "close", "route:agent"))[1][:2] == ["route:agent", "forced_closed"]
    assert rows(await cli("breakers", "list"))[1][:2] == ["route:agent", "forced_closed"]
    assert rows(await cli("breakers", "reset", "route:agent"))[1][:2] == ["route:agent", "closed"]
    assert await cli.json("breakers", "list") == await admin.request("GET", "/breakers")

    stats = rows(await cli("stats", "failures"))
    assert stats[0] == ["ROUTE", "CATEGORY", "FAILURE MODE", "COUNT"]
    assert [stats[1][0], *stats[1][2:]] == ["agent", "disobey_task_specification", "2"]
    assert await cli.json("stats", "failures") == await admin.request("GET", "/stats/failures?window=3600")


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal, os.fdopen(leader, "rb"):
        assert colour_wanted(terminal, {})
        assert colour_wanted(terminal, {"NO_COLOR": ""})  # no-color.org: set *and non-empty*
        assert not colour_wanted(terminal, {"NO_COLOR": "1"})
    with open(os.devnull, "w") as pipe:
        assert not colour_wanted(pipe, {})


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the real command with its stdout on a pseudo-terminal and return what it wrote there."""
    leader, follower = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], stdout=follower,
                          stderr=subprocess.PIPE, env={**os.environ, **env}) as process:  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the command exited and the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    return b"".join(chunks).decode()


async def test_a_terminal_gets_colour_unless_no_color(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await escalate(upstream, admin, http, gateway, "run-1")
    env = {"AGENT_GATEWAY_ADMIN_TOKEN": TOKEN, "AGENT_GATEWAY_ADMIN_URL": str(gateway.admin_url), "NO_COLOR": ""}
    coloured = await asyncio.to_thread(_on_a_terminal, ["dlq", "list"], env)
    assert "\x1b[33mpending\x1b[0m" in coloured
    plain = await asyncio.to_thread(_on_a_terminal, ["dlq", "list"], {**env, "NO_COLOR": "1"})
    assert "pending" in plain
    assert "\x1b[" not in plain
