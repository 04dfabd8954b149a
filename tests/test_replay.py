"""``agent-gateway runs replay``: a run recorded through a real gateway (payloads kept, a secret redacted) is
replayed by the real command against a fixed and a regressed version of the agent."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
import pytest

from gateway.cli import _parser
from gateway.cli_support import CommandError
from gateway.testing import Fault, FaultyAgent, GatewayFactory, GatewayUnderTest
from tests.test_faultkit import DRAFT, WRITER

KEEP = {"audit": {"payloads": True, "redact": ["/api_key"]}}
REQUEST = {"plan": ["outline", "write"], "api_key": "sk-live-1"}


async def replay_here(
    gw: GatewayUnderTest, run_id: str, against: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:  # fmt: skip
    """The command's parsed arguments run on this event loop (no process start-up): exit status and message."""
    monkeypatch.setenv("AGENT_GATEWAY_ADMIN_TOKEN", gw.token)
    args = _parser().parse_args(["runs", "replay", run_id, "--against", against, "--admin-url", gw.admin_url])
    try:
        return await args.run(args), ""
    except CommandError as exc:
        return exc.code, str(exc)


async def replay(gw: GatewayUnderTest, run_id: str, against: str, *extra: str) -> tuple[int, str, str]:
    """The command as a user runs it, in its own process (so this loop keeps serving the agents)."""
    env = {**os.environ, "AGENT_GATEWAY_ADMIN_TOKEN": gw.token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "runs", "replay", run_id, "--against", against,
        "--admin-url", gw.admin_url, *extra, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def record_run(agent_gateway: GatewayFactory, run_id: str, settings: dict[str, Any]) -> GatewayUnderTest:
    """Three handoffs to the writer (valid, one answer missing its title, valid) and one malformed request."""
    old = FaultyAgent(answer=DRAFT, schedule=[None, Fault.missing("/draft/title")])
    async with old:
        gw = await agent_gateway({"writer": old}, contracts=[WRITER], settings=settings)
        headers = {"X-Run-Id": run_id}
        verdicts = [(await gw.post("writer", "/draft", json=REQUEST, headers=headers)).verdict for _ in range(3)]
        refused = await gw.post("writer", "/draft", json={"no": "plan"}, headers=headers)
    assert verdicts == ["valid", "response_invalid", "valid"]
    assert refused.status == 422
    return gw


def rows(out: str) -> list[list[str]]:
    """The table's (number, step, old, new, change) cells."""
    return [line.split()[:6] for line in out.splitlines() if line.strip()[:1].isdigit()]


async def test_a_fixed_agent_replays_better_and_exits_0(
    agent_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = await record_run(agent_gateway, "prod-1", KEEP)
    async with FaultyAgent(answer=DRAFT) as fixed:
        code, _ = await replay_here(gw, "prod-1", fixed.url, monkeypatch)
    out = capsys.readouterr().out
    assert code == 0
    assert rows(out) == [
        ["1", "POST", "/draft", "valid", "valid", "same"],
        ["2", "POST", "/draft", "response_invalid", "valid", "better"],
        ["3", "POST", "/draft", "valid", "valid", "same"],
        ["4", "POST", "/draft", "request_invalid", "-", "skipped"],
    ]
    assert "Summary: 3 replayed, 0 worse, 1 better, 1 skipped" in out
    assert "#1 sent without redacted member(s): /api_key" in out
    assert [r.json for r in fixed.received] == [{"plan": ["outline", "write"]}] * 3  # the secret never resent
    assert {(r.headers["X-Run-Id"], r.headers["Accept-Encoding"]) for r in fixed.received} == {
        ("replay-prod-1", "identity")  # judged as the gateway would read it: uncompressed
    }


async def test_a_regressed_agent_is_reported_worse_and_exits_1(agent_gateway: GatewayFactory) -> None:
    gw = await record_run(agent_gateway, "prod-2", KEEP)
    async with FaultyAgent(answer=DRAFT, schedule=[None, None, Fault.wrong_type("/draft/version")]) as regressed:
        code, out, _ = await replay(gw, "prod-2", regressed.url, "--json")
    assert code == 1  # the exit status a CI job gates on, from the real command
    outcomes = orjson.loads(out)
    assert [(o["old"], o["new"], o["change"]) for o in outcomes] == [
        ("valid", "valid", "same"),
        ("response_invalid", "valid", "better"),
        ("valid", "response_invalid", "worse"),
        ("request_invalid", None, "skipped"),
    ]
    assert outcomes[2]["detail"].startswith("/draft/version type:")


async def test_a_run_recorded_without_payloads_cannot_be_replayed(
    agent_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await record_run(agent_gateway, "prod-3", {})
    async with FaultyAgent(answer=DRAFT) as fixed:
        code, message = await replay_here(gw, "prod-3", fixed.url, monkeypatch)
    assert code == 2
    assert "were not recorded" in message
    assert "audit.payloads: true" in message
    assert fixed.calls == 0
