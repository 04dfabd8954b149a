"""The ``agent-gateway`` command end to end, as separate processes: ``demo``, ``serve`` and the admin verbs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOKEN, contract, eventually_blocking, free_port

CLI = [sys.executable, "-m", "gateway.cli"]


def test_demo_prints_a_report_and_exits_0() -> None:
    done = subprocess.run([*CLI, "demo"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Run 1: healthy pipeline" in out
    assert "researcher → planner       502   response_invalid  /steps/0 required" in out
    assert '/draft/version type: "one" is not of type "integer"' in out
    assert "contentType: content type 'text/plain' is not JSON" in out
    assert "422   request_invalid   /topic minLength" in out
    assert "[agent never called]" in out
    assert "invalid payloads passed on as valid in enforce mode: 0" in out
    assert "3  planner → writer           200   valid             attempts=2 checkpoint stored" in out
    assert "502   upstream_error" in out  # verdicts (gateway.outcomes.Verdict), never problem types
    assert "503   breaker_open" in out
    assert "agents called on the re-run: 0" in out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    data_port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN,
        "AGENT_GATEWAY_ADMIN__PORT": str(admin_port),
        "AGENT_GATEWAY_LISTEN__HOST": "127.0.0.1",
        "AGENT_GATEWAY_STORE__PATH": str(tmp_path / "gw.db"),
        "AGENT_GATEWAY_ADMIN_URL": f"http://127.0.0.1:{admin_port}",
    }
    process = subprocess.Popen([*CLI, "serve", "--port", str(data_port)], env=env, stderr=subprocess.PIPE)

    def ready() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1):
            return True

    try:
        eventually_blocking(ready, within=30, ignoring=(OSError,), what="the served gateway is ready")
        yield f"http://127.0.0.1:{data_port}", env
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
        assert process.returncode == 0, errors  # SIGTERM is a clean shutdown


def test_serve_and_manage_contracts_from_the_command_line(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    data_url, env = served
    document = tmp_path / "tasks.json"
    document.write_text(json.dumps(contract()))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert json.loads(cli("contracts", "push", str(document)).stdout)["registered"][0]["version"] == 1
    assert json.loads(cli("contracts", "list").stdout)["contracts"][0]["active_version"] == 1
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"task": 5}))
    verdict = cli("contracts", "validate", "agent.tasks", str(payload))
    assert verdict.returncode == 1
    assert json.loads(verdict.stdout)["valid"] is False
    assert cli("contracts", "activate", "agent.tasks", "7").returncode == 2
    request = urllib.request.Request(f"{data_url}/agent/tasks", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    info.value.close()
    assert info.value.code == 404  # no route yet: contracts alone do not route
    policy = tmp_path / "policy.yaml"
    policy.write_text("id: p\nattach: {route: agent}\nretry: {max_attempts: 2}\n")
    assert json.loads(cli("policies", "push", str(policy)).stdout)["registered"][0]["id"] == "p"
    assert json.loads(cli("policies", "show", "p").stdout)["document"]["retry"] == {"max_attempts": 2}
    assert json.loads(cli("runs", "list", "--json").stdout) == {"runs": []}
    bad_env = {**env, "AGENT_GATEWAY_ADMIN_TOKEN": "wrong"}
    refused = subprocess.run([*CLI, "contracts", "list"], env=bad_env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "unauthorized" in refused.stdout
    assert refused.stderr.startswith("agent-gateway: the admin API refused: 401")


def test_version_and_help_read_as_plain_text() -> None:
    version = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0
    assert version.stdout.startswith("agent-gateway ")
    assert version.stdout.split()[1][0].isdigit()
    helped = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0
    assert "``" not in helped.stdout  # no reStructuredText markup in what a person reads
