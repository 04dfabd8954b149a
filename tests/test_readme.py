"""The README's five-minute tutorial, run as written: its shell blocks against a served gateway and echo agent.

A tutorial that drifts from the product is the first thing a new user hits, so the blocks are read from README.md
itself (only the tutorial's fixed ports are swapped for free ones) and every expected output the README shows —
the ``# ...`` lines under a command and the 422 problem document — is compared with what the commands print.
"""

from __future__ import annotations

import json
import os
import re
import socket
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
    """The fenced blocks of ``section`` whose opening fence names ``language`` ("" for a bare fence)."""
    fenced: list[tuple[str, list[str]]] = []
    inside = False
    for line in section.splitlines(keepends=True):
        if line.startswith("```"):
            if not inside:
                fenced.append((line.strip().removeprefix("```"), []))
            inside = not inside
        elif inside:
            fenced[-1][1].append(line)
    return ["".join(lines) for name, lines in fenced if name == language]


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


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(title)
    return text[start : text.index("\n### ", start + 1)]


def test_the_pipeline_example_is_the_test_file_that_runs_in_ci() -> None:
    example = Path(__file__).with_name("test_readme_pipeline_example.py").read_text(encoding="utf-8")
    shown = _blocks(_section("### `gateway.testing`"), "python")
    assert shown == [example]


def test_contracts_fuzz_catches_the_planted_bug_as_the_readme_shows(tmp_path: Path) -> None:
    """The README's two commands (agent with the planted bug, then the fuzzer) and the report lines it quotes."""
    section = _section("### `contracts fuzz`")
    serve, fuzz = _blocks(section, "bash")[0].strip().splitlines()
    shown = next(block for block in _blocks(section, "") if block.startswith("contracts fuzz"))
    port = str(free_port())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    agent = subprocess.Popen(["bash", "-c", serve.removesuffix("&").replace("18704", port)], env=env)
    try:
        eventually_blocking(
            lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=1).close() is None,
            within=30,
            ignoring=(OSError,),
            what="the planted writer is serving",
        )
        (tmp_path / "contracts").symlink_to(README.parent / "contracts")  # the command's relative --file
        done = subprocess.run(
            ["bash", "-c", fuzz.replace("18704", port)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        agent.terminate()
        agent.communicate(timeout=10)
    assert done.returncode == 1, done.stdout + done.stderr
    for line in ("FAILED: 1 contract breach(es)", '{"steps":[null],"topic":"\\u0080"}', '/draft required: "title"'):
        assert line in shown
        assert line in done.stdout
    assert "<failure" in (tmp_path / "fuzz.xml").read_text(encoding="utf-8")
