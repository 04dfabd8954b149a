"""Start-up and the CLI as separate processes: one line on stderr and a meaningful exit status, never a traceback.

Exit status 2 is a usage error (settings, admin URL, input files, a refusal from the admin API), 1 a runtime
failure (cannot bind, cannot reach the store or the admin API, or what answers is not the admin API).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import RunningGateway
from tests.conftest import TOKEN, Handler, Upstream, contract, eventually_blocking, free_port, replying
from tests.test_config import KUBERNETES_ENV

CLI = [sys.executable, "-m", "gateway.cli"]
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_GATEWAY_", "GATEWAY_"))}
HTML = b"<!DOCTYPE html><html><body><h1>Directory listing</h1></body></html>"


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in a child process while this event loop keeps serving the test's loopback servers."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**BASE_ENV, **(env or {})}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)  # a hang guard, not a measurement
    finally:
        if process.returncode is None:  # e.g. `serve` started when the test expected a refusal
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def failure_line(stderr: str, *fragments: str) -> str:
    """The CLI's own line among the gateway's log lines (start-up failures may log what they tried first)."""
    assert "Traceback" not in stderr, stderr
    ours = [line for line in stderr.splitlines() if line.startswith("agent-gateway: ")]
    assert len(ours) == 1, stderr
    for fragment in fragments:
        assert fragment in ours[0], ours[0]
    return ours[0]


def one_line(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("agent-gateway: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- serve ---------------------------------------------------------------------------------------------------


def test_serve_starts_in_a_pod_with_kubernetes_service_links(tmp_path: Path) -> None:
    """The crash loop: Services named `gateway` and `agent-gateway` in the namespace, and an old variable."""
    data_port, admin_port = free_port(), free_port()
    env = {
        **BASE_ENV,
        **KUBERNETES_ENV,
        "GATEWAY_ADMIN_TOKEN": "the-old-name",
        "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN,
        "AGENT_GATEWAY_ADMIN__PORT": str(admin_port),
        "AGENT_GATEWAY_LISTEN__HOST": "127.0.0.1",
        "AGENT_GATEWAY_STORE__PATH": str(tmp_path / "gw.db"),
    }
    process = subprocess.Popen([*CLI, "serve", "--port", str(data_port)], env=env, stderr=subprocess.PIPE, text=True)

    def routes() -> Any:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/routes")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=1) as answer:
            return json.load(answer)

    try:  # start-up either answers or the process has exited
        assert eventually_blocking(routes, within=30, ignoring=(OSError,), what="the admin API answers") == {
            "routes": []
        }
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    assert "GATEWAY_ADMIN_TOKEN is ignored" in errors
    assert "rename it AGENT_GATEWAY_ADMIN_TOKEN" in errors
    assert "the-old-name" not in errors


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("listen: {port: 80\n", ["not valid YAML", "line 2"]),
        ("- a\n- b\n", ["top level must be a mapping"]),
        ("listen: {bogus: 1}\n", ["listen.bogus: unknown setting"]),
        ("routes:\n  - {name: a, upstream: 'http://h:abc'}\n", ["routes[0].upstream:"]),
        ("listen: {port: eighty}\n", ["listen.port:", "integer"]),
    ],
)
async def test_serve_refuses_bad_settings_files_in_one_line(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    code, _, err = await cli("serve", "--config", str(path))
    assert code == 2
    one_line(err, str(path), *fragments)


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        ({}, ["missing.yaml: no such file"]),
        ({"AGENT_GATEWAY_LISTEN__PORT": "eighty"}, ["AGENT_GATEWAY_LISTEN__PORT: listen.port:"]),
        ({"AGENT_GATEWAY_LISTEN__PROT": "1"}, ["AGENT_GATEWAY_LISTEN__PROT: unknown setting"]),
        ({"AGENT_GATEWAY_PORT": "8081"}, ["AGENT_GATEWAY_PORT: unknown setting"]),
    ],
)
async def test_serve_refuses_bad_files_and_variables_in_one_line(
    tmp_path: Path, environ: dict[str, str], fragments: list[str]
) -> None:
    args = ["--config", str(tmp_path / "missing.yaml")] if not environ else []
    code, _, err = await cli("serve", *args, env={**KUBERNETES_ENV, **environ})
    assert code == 2
    one_line(err, *fragments)


async def test_serve_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"AGENT_GATEWAY_STORE__PATH": str(tmp_path / "gw.db"), "AGENT_GATEWAY_LISTEN__HOST": "127.0.0.1"}
        code, _, err = await cli("serve", "--port", str(port), env=env)
    assert code == 1
    failure_line(err, "cannot start:")
    code, _, err = await cli("serve", env={"AGENT_GATEWAY_STORE__PATH": str(tmp_path / "no" / "dir" / "gw.db")})
    assert code == 1
    failure_line(err, "cannot start:")


async def test_demo_refuses_bad_document_directories_in_one_line(tmp_path: Path) -> None:
    code, _, err = await cli("demo", "--contracts", str(tmp_path / "none"))
    assert code == 2
    one_line(err, "no demo documents")
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n")
    code, _, err = await cli("demo", "--contracts", str(tmp_path))
    assert code == 2
    one_line(err, "broken.yaml", "not valid JSON or YAML")


# -- admin commands --------------------------------------------------------------------------------------------


def admin_env(gateway: RunningGateway, **more: str) -> dict[str, str]:
    assert gateway.admin_url is not None
    return {"AGENT_GATEWAY_ADMIN_URL": gateway.admin_url, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN, **more}


async def test_an_admin_url_without_scheme_means_http(gateway: RunningGateway) -> None:
    bare = f"127.0.0.1:{gateway.admin_port}"
    code, out, err = await cli("contracts", "list", "--json", env=admin_env(gateway, AGENT_GATEWAY_ADMIN_URL=bare))
    assert (code, json.loads(out), err) == (0, {"contracts": []}, "")
    code, out, _ = await cli(
        "routes", "list", "--json", "--admin-url", f"localhost:{gateway.admin_port}", env=admin_env(gateway)
    )
    assert code == 0
    assert [r["name"] for r in json.loads(out)["routes"]] == ["agent"]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://127.0.0.1:9901", "not an http(s) URL"),
        ("http://127.0.0.1:port", "not a URL"),
        ("http://", "not an http(s) URL"),
        ("http://a b:9901", "not an http(s) URL"),
        ("http://127.0.0.1:9901/?x=1", "query or fragment"),
    ],
)
async def test_unusable_admin_urls_are_usage_errors(url: str, fragment: str) -> None:
    code, out, err = await cli("contracts", "list", env={"AGENT_GATEWAY_ADMIN_URL": url})
    assert (code, out) == (2, "")
    one_line(err, "AGENT_GATEWAY_ADMIN_URL:", fragment)


async def test_an_unusable_admin_url_flag_is_named() -> None:
    code, _, err = await cli("runs", "list", "--admin-url", "ftp://127.0.0.1:9901")
    assert code == 2
    one_line(err, "--admin-url:", "not an http(s) URL")


MakeUpstream = Callable[[Handler | None], Awaitable[Upstream]]


@pytest.mark.parametrize(
    ("handler", "args"),
    [
        (replying(HTML, 200, "text/html"), ["contracts", "list"]),
        (replying(HTML, 200, "text/html"), ["contracts", "validate", "x", "{payload}"]),
        (replying(HTML, 404, "text/html"), ["runs", "show", "r1"]),
        (replying(b"[1, 2, 3]", 200, "application/json"), ["routes", "list"]),
        (replying(b"", 502, "text/plain"), ["policies", "list"]),
        (replying(b"{not json", 200, "application/json"), ["runs", "list"]),
    ],
    ids=["html-200", "html-200-validate", "html-404", "json-array", "empty-502", "broken-json"],
)
async def test_an_admin_url_that_is_not_the_gateway_fails_in_one_line(
    make_upstream: MakeUpstream, handler: Handler, args: list[str], tmp_path: Path
) -> None:
    url = (await make_upstream(handler)).url
    payload = tmp_path / "payload.json"
    payload.write_text("{}")
    args = [arg.format(payload=payload) for arg in args]
    code, _, err = await cli(*args, env={"AGENT_GATEWAY_ADMIN_URL": url})
    assert code == 1
    one_line(err, "not the admin API's JSON", "agent-gateway admin listener")


async def test_a_json_server_that_is_not_the_gateway_fails_in_one_line(make_upstream: MakeUpstream) -> None:
    url = (await make_upstream(replying(b'{"status": "ok"}', 200, "application/json"))).url
    for args in (["runs", "list"], ["runs", "show", "r1"]):
        code, _, err = await cli(*args, env={"AGENT_GATEWAY_ADMIN_URL": url})
        assert code == 1
        one_line(err, "agent-gateway admin listener")


async def test_a_closed_port_or_a_dropped_connection_fails_in_one_line() -> None:
    code, _, err = await cli("contracts", "list", env={"AGENT_GATEWAY_ADMIN_URL": f"127.0.0.1:{free_port()}"})
    assert code == 1
    one_line(err, "cannot reach the admin API")

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        code, _, err = await cli("policies", "list", "--admin-url", f"http://127.0.0.1:{port}")
    assert code == 1
    one_line(err, "cannot reach the admin API")


async def test_payload_files_for_validate(gateway: RunningGateway, tmp_path: Path) -> None:
    document = tmp_path / "tasks.json"
    document.write_text(json.dumps(contract()))
    env = admin_env(gateway)
    assert (await cli("contracts", "push", str(document), env=env))[0] == 0
    cases = {
        "prose.json": (b"this is not JSON", 2, "prose.json: not valid JSON"),
        "binary.json": (b"\xff\xfe\x00\x01", 2, "binary.json: not valid JSON"),
        "broken.yaml": (b"task: [unclosed\n", 2, "broken.yaml: not valid YAML"),
        "set.yaml": (b"task: !!set {a, b}\n", 2, "set.yaml: cannot be sent as JSON"),
    }
    for name, (content, status, fragment) in cases.items():
        (tmp_path / name).write_bytes(content)
        code, out, err = await cli("contracts", "validate", "agent.tasks", str(tmp_path / name), env=env)
        assert (code, out) == (status, ""), err
        one_line(err, fragment)
    code, _, err = await cli("contracts", "validate", "agent.tasks", str(tmp_path / "missing.json"), env=env)
    assert code == 2
    one_line(err, "missing.json: cannot read it")
    good = tmp_path / "good.yaml"
    good.write_text("task: write\npriority: 1\n")
    code, out, err = await cli("contracts", "validate", "agent.tasks", str(good), "--json", env=env)
    assert (code, json.loads(out)["valid"], err) == (0, True, "")


async def test_document_files_for_push(gateway: RunningGateway, tmp_path: Path) -> None:
    env = admin_env(gateway)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01")
    code, _, err = await cli("contracts", "push", str(tmp_path / "binary.yaml"), env=env)
    assert code == 2
    one_line(err, "binary.yaml")
    code, _, err = await cli("policies", "push", str(tmp_path / "missing.yaml"), env=env)
    assert code == 2
    one_line(err, "missing.yaml: cannot read it")


async def test_a_refusal_is_the_problem_on_stdout_and_one_line_on_stderr(gateway: RunningGateway) -> None:
    code, out, err = await cli("contracts", "list", env=admin_env(gateway, AGENT_GATEWAY_ADMIN_TOKEN="wrong"))
    assert code == 2
    assert json.loads(out)["status"] == 401
    one_line(err, "the admin API refused: 401")


async def test_old_admin_variables_are_named_not_read(gateway: RunningGateway) -> None:
    env = {"GATEWAY_ADMIN_URL": str(gateway.admin_url), "GATEWAY_ADMIN_TOKEN": TOKEN}
    code, _, err = await cli("routes", "list", "--admin-url", str(gateway.admin_url), env=env)
    assert code == 2  # the token under its old name is not sent
    assert "rename it AGENT_GATEWAY_ADMIN_URL" in err
    assert "rename it AGENT_GATEWAY_ADMIN_TOKEN" in err
    assert TOKEN not in err
