"""``agent-gateway contracts fuzz`` as a user runs it (the real command in a subprocess, real loopback agents) and
``POST /contracts/{id}/fuzz`` through the admin listener."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.cli import _parser
from gateway.cli_support import CommandError
from tests.conftest import TOKEN, Handler, Upstream, free_port
from tests.test_fuzz_contracts import DOCUMENT, agent, never, non_ascii_name

MakeUpstream = Callable[[Handler | None], Awaitable[Upstream]]


async def cli(*args: str) -> tuple[int, str, str]:
    """Run ``agent-gateway`` in a subprocess (this test's loop keeps serving the agents meanwhile)."""
    env = {**os.environ, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def contract_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.json"
    path.write_bytes(orjson.dumps(DOCUMENT))
    return path


async def test_a_breach_exits_1_with_the_report_and_junit_xml(
    make_upstream: MakeUpstream, contract_file: Path, tmp_path: Path
) -> None:
    upstream = await make_upstream(agent(non_ascii_name))
    junit = tmp_path / "fuzz.xml"
    code, out, err = await cli(
        "contracts", "fuzz", "agent.tasks", "--file", str(contract_file), "--against", upstream.url,
        "--seed", "3", "--junit", str(junit),
    )  # fmt: skip
    assert code == 1, err
    assert "FAILED: 1 contract breach(es)" in out
    assert "/ required:" in out
    assert "response: 200" in out
    assert ET.parse(junit).getroot().findall("testcase/failure")


async def test_a_clean_agent_exits_0(make_upstream: MakeUpstream, contract_file: Path) -> None:
    upstream = await make_upstream(agent(never))
    code, out, err = await cli(
        "contracts", "fuzz", "agent.tasks", "--file", str(contract_file), "--against", upstream.url, "--json"
    )
    assert code == 0, err
    report = orjson.loads(out)
    assert report["failures"] == []
    assert report["generated"] > 0


async def usage_error(*args: str) -> str:
    """The one-line message of a usage error (exit 2), found in process: argparse's own, or a CommandError."""
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            parsed = _parser().parse_args(["contracts", "fuzz", *args])
        except SystemExit as exc:
            code = exc.code
        else:
            code = None
    if code is not None:
        assert code == 2
        return err.getvalue()
    with pytest.raises(CommandError) as raised:
        await parsed.run(parsed)
    assert raised.value.code == 2
    return str(raised.value)


async def test_usage_errors_exit_2_in_one_line(contract_file: Path, tmp_path: Path) -> None:
    file = ("agent.tasks", "--file", str(contract_file))
    assert "expected an http(s) URL" in await usage_error(*file, "--against", "not a url")
    assert "must be positive" in await usage_error(*file, "--against", "http://x", "--max-examples", "0")
    assert "invalid choice" in await usage_error(*file, "--against", "http://x", "--near-valid", "sometimes")
    assert "holds contract 'agent.tasks'" in await usage_error("other", *file[1:], "--against", "http://x")
    assert "cannot read it" in await usage_error("x", "--file", str(tmp_path / "no.yaml"), "--against", "http://x")
    code, _, err = await cli("contracts", "fuzz", "x", "--file", str(tmp_path / "no.yaml"), "--against", "http://x")
    assert code == 2
    assert err.startswith("agent-gateway: ")
    assert len(err.splitlines()) == 1


async def test_the_contract_can_come_from_the_admin_api(gateway: RunningGateway, upstream: Upstream) -> None:
    upstream.handler = agent(non_ascii_name)
    async with AdminClient(gateway.admin_url, TOKEN) as admin:
        await admin.request("PUT", "/contracts/agent.tasks", body=DOCUMENT)
    code, out, err = await cli(
        "contracts", "fuzz", "agent.tasks", "--admin-url", str(gateway.admin_url), "--against", upstream.url
    )
    assert code == 1, err
    assert "contracts fuzz agent.tasks (version 1)" in out


async def test_the_admin_endpoint_fuzzes_with_the_token_and_refuses_without(
    gateway: RunningGateway, upstream: Upstream
) -> None:
    upstream.handler = agent(non_ascii_name)
    url = f"{gateway.admin_url}/contracts/agent.tasks/fuzz"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{gateway.admin_url}/contracts/agent.tasks", json=DOCUMENT, headers=auth) as resp:
            assert resp.ok, await resp.text()
        async with session.post(url, json={"against": upstream.url}) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
        async with session.post(url, json={"against": upstream.url, "max_examples": 30}, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            report = await resp.json()
        async with session.post(url, json={"against": f"http://127.0.0.1:{free_port()}"}, headers=auth) as resp:
            unreachable = (resp.status, await resp.json(content_type=None))
        async with session.post(url, json={"against": upstream.url, "seconds": 3600}, headers=auth) as resp:
            assert resp.status == 400  # the budget is capped
    assert report["contract"] == "agent.tasks"
    assert len(report["failures"]) == 1
    assert report["failures"][0]["violations"] == [
        {"pointer": "", "keyword": "required", "message": '"result" is a required property'}
    ]
    assert unreachable[0] == 502
    assert unreachable[1]["type"].endswith("/upstream_error")
