"""``dlq``, ``breakers`` and ``stats`` verbs against a live gateway, run as the real command (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from tests.conftest import TOKEN, Upstream, contract

POLICY = {"id": "ops", "attach": {"route": "agent"}, "failure_modes": {"response_invalid": "escalate"},
          "escalation": {"respond_status": 202}, "breaker": {"minimum_calls": 100}}  # fmt: skip


async def cli(gateway: RunningGateway, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, "--admin-url", str(gateway.admin_url),
        env={**os.environ, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_a_person_works_the_dlq_breakers_and_stats_from_the_command_line(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def invalid(request: web.Request) -> web.Response:
        return web.json_response({"result": 7})

    upstream.handler = invalid
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    await admin.request("PUT", "/policies/ops", body=POLICY)
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as escalated:
        item = (await escalated.json())["escalation_id"]

    code, out, _ = await cli(gateway, "dlq", "list")
    assert code == 0
    assert item in out
    assert "response_invalid" in out
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"result": "fixed by a person"}))
    code, out, _ = await cli(gateway, "dlq", "resolve", item, str(answer), "--note", "checked", "--json")
    assert (code, json.loads(out)["status"]) == (0, "resolved")
    code, out, _ = await cli(gateway, "dlq", "list", "--status", "resolved", "--json")
    assert [i["id"] for i in json.loads(out)["escalations"]] == [item]
    code, _, err = await cli(gateway, "dlq", "resolve", item, str(answer))
    assert code == 2  # already resolved: the admin API's 409, in one line
    assert len(err.strip().splitlines()) == 1

    code, out, _ = await cli(gateway, "breakers", "open", "route:agent", "--json")
    assert (code, json.loads(out)["state"]) == (0, "forced_open")
    code, out, _ = await cli(gateway, "breakers", "list")
    assert "route:agent" in out
    assert "forced_open" in out
    code, out, _ = await cli(gateway, "breakers", "reset", "route:agent", "--json")
    assert json.loads(out)["state"] == "closed"

    code, out, _ = await cli(gateway, "stats", "failures", "--window", "600")
    assert code == 0
    assert "agent" in out
    assert "disobey_task_specification" in out
