"""The README's five-minute tutorial, run as written: its shell blocks against a served gateway and echo agent.

A tutorial that drifts from the product is the first thing a new user hits, so the blocks are read from README.md
itself (only the tutorial's fixed ports are swapped for free ones) and every expected output the README shows —
the ``# ...`` lines under a command and the 422 problem document — is compared with what the commands print.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import eventually_blocking, free_port

README = Path(__file__).resolve().parent.parent / "README.md"
TUTORIAL_PORTS = ("8001", "8080", "9901")


def _tutorial() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Five-minute tutorial")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _expected_lines(block: str) -> list[str]:
    """The ``# output`` lines a block shows under its commands (heredoc bodies excluded)."""
    expected, in_heredoc = [], None
    for line in block.splitlines():
        if in_heredoc is not None:
            in_heredoc = None if line.strip() == in_heredoc else in_heredoc
            continue
        if heredoc := re.search(r"<<'?(\w+)'?", line):
            in_heredoc = heredoc.group(1)
        elif line.startswith("# "):
            expected.append(line[2:].strip())
    return expected


class Ports:
    def __init__(self) -> None:
        self.agent, self.data, self.admin = free_port(), free_port(), free_port()

    def swap(self, text: str) -> str:
        for fixed, port in zip(TUTORIAL_PORTS, (self.agent, self.data, self.admin), strict=True):
            text = re.sub(rf"(?<=[:\s]){fixed}\b", str(port), text)
        return text


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Ports, dict[str, str]]]:
    """The first block's two processes, started as the block says (the ports come from the environment)."""
    first = _blocks(_tutorial(), "bash")[0]
    assert "python -m gateway.demo.echo 8001" in first
    assert "agent-gateway serve" in first
    token = re.search(r"export AGENT_GATEWAY_ADMIN_TOKEN=(\S+)", first)
    assert token, "the tutorial exports the admin token"
    ports = Ports()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AGENT_GATEWAY_ADMIN_TOKEN": token.group(1),
        "AGENT_GATEWAY_LISTEN__PORT": str(ports.data),
        "AGENT_GATEWAY_ADMIN__PORT": str(ports.admin),
        "AGENT_GATEWAY_ADMIN_URL": f"http://127.0.0.1:{ports.admin}",
    }
    agent = subprocess.Popen([sys.executable, "-m", "gateway.demo.echo", str(ports.agent)], env=env)
    gateway = subprocess.Popen(["agent-gateway", "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)

    def ready() -> bool:
        assert gateway.poll() is None, gateway.stderr.read() if gateway.stderr else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.admin}/readyz", timeout=1):
            return True

    try:
        eventually_blocking(ready, within=30, ignoring=(OSError,), what="the tutorial's gateway is ready")
        yield ports, env
    finally:
        for process in (gateway, agent):
            process.terminate()
            process.communicate(timeout=10)


def _run(block: str, ports: Ports, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", ports.swap(block)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_tutorial_runs_as_written(served: tuple[Ports, dict[str, str]], tmp_path: Path) -> None:
    ports, env = served
    tutorial = _tutorial()
    blocks = _blocks(tutorial, "bash")[1:]
    problems = _blocks(tutorial, "json")
    assert len(blocks) >= 4, "route + contract, valid call, invalid call, CLI dry run"
    for block in blocks:
        output = _run(block, ports, env, tmp_path)
        for expected in _expected_lines(block):
            assert expected in output, f"README promises {expected!r} from:\n{block}\ngot:\n{output}"
        if '-d \'{"goal": ""' in block:  # the invalid call: its answer is the README's problem document
            shown, got = json.loads(problems[0]), json.loads(output)
            assert got.pop("trace_id")
            assert shown.pop("trace_id")
            assert got == shown
    assert (tmp_path / "payload.json").exists(), "the dry run's payload comes from the tutorial itself"
