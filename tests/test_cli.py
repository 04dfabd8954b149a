"""The ``agent-gateway`` command end to end, as separate processes: ``demo``, ``serve`` and the admin verbs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import RunningGateway
from gateway.cli import _parser
from gateway.cli_completion import walk
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

    assert json.loads(cli("contracts", "push", str(document), "--json").stdout)["registered"][0]["version"] == 1
    assert json.loads(cli("contracts", "list", "--json").stdout)["contracts"][0]["active_version"] == 1
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"task": 5}))
    verdict = cli("contracts", "validate", "agent.tasks", str(payload), "--json")
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
    assert json.loads(cli("policies", "push", str(policy), "--json").stdout)["registered"][0]["id"] == "p"
    assert json.loads(cli("policies", "show", "p", "--json").stdout)["document"]["retry"] == {"max_attempts": 2}
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


def _parsers(
    parser: argparse.ArgumentParser, path: str = "agent-gateway"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                assert helps.get(name), f"{path} {name} has no help"
                yield from _parsers(child, f"{path} {name}")


def test_every_verb_and_option_has_help() -> None:
    walked = list(_parsers(_parser()))
    assert len(walked) > 30
    for path, parser in walked:
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):  # its verbs were checked by _parsers
                assert action.help, f"{path}: {action.option_strings or action.dest} has no help"


BAD = [
    (["runs", "show", "no-such-run"], 2, "the admin API refused: 404"),
    (["dlq", "show", "no-such-item"], 2, "the admin API refused: 404"),
    (["contracts", "show", "no.such.contract"], 2, "the admin API refused: 404"),
    (["breakers", "reset", "no-such-breaker"], 2, "the admin API refused: 404"),
    (["contracts", "push", "{tmp}/missing.json"], 2, "missing.json: cannot read it"),
    (["dlq", "resolve", "x", "{tmp}/prose.json"], 2, "prose.json: not valid JSON"),
    (["runs", "list", "--limit", "many"], 2, "invalid int value"),
    (["runs", "frobnicate"], 2, "invalid choice"),
    (["completion", "powershell"], 2, "invalid choice"),
]


async def test_bad_invocations_fail_in_one_line_without_a_traceback(gateway: RunningGateway, tmp_path: Path) -> None:
    (tmp_path / "prose.json").write_text("not JSON")
    env = {**os.environ, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN, "AGENT_GATEWAY_ADMIN_URL": str(gateway.admin_url)}
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [(args, env, code, what) for args, code, what in BAD] + [
        (["runs", "list", "--admin-url", closed], env, 1, "cannot reach the admin API"),
        (["runs", "tail", "--admin-url", closed], env, 1, "cannot reach the admin API"),
        (["stats", "failures"], {**env, "AGENT_GATEWAY_ADMIN_TOKEN": "wrong"}, 2, "the admin API refused: 401"),
        (["runs", "tail"], {**env, "AGENT_GATEWAY_ADMIN_TOKEN": "wrong"}, 2, "the admin API refused: 401"),
    ]

    async def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *CLI, *(a.format(tmp=tmp_path) for a in args), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await process.communicate()
        return process.returncode or 0, err.decode()

    results = await asyncio.gather(*(run(args, env) for args, env, _, _ in cases))
    for (args, _, code, what), (got, err) in zip(cases, results, strict=True):
        assert got == code, (args, err)
        assert len(err.splitlines()) == 1, (args, err)
        assert err.startswith("agent-gateway: "), (args, err)
        assert what in err, (args, err)


def _bash_complete(script: str, line: str) -> list[str]:
    """What bash's Tab offers after ``line`` (the completion function called as bash calls it)."""
    words = line.split(" ")
    quoted = " ".join(f"'{w}'" for w in words)
    call = '_agent_gateway; printf "%s\\n" "${COMPREPLY[@]}"'
    program = f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n{call}\n"
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


def _script(shell: str) -> str:
    done = subprocess.run([*CLI, "completion", shell], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_bash_completion_follows_the_command_tree(tmp_path: Path) -> None:
    script = _script("bash")
    assert _bash_complete(script, "agent-gateway ru") == ["runs"]
    assert _bash_complete(script, "agent-gateway runs ") == ["list", "show", "tail", "replay"]
    assert _bash_complete(script, "agent-gateway runs tail --") == ["--help", "--admin-url", "--run", "--json"]
    assert _bash_complete(script, "agent-gateway dlq list --status re") == ["resolved", "replayed"]
    assert _bash_complete(script, "agent-gateway contracts validate --direction r") == ["request", "response"]
    (tmp_path / "payload.json").write_text("{}")
    assert _bash_complete(script, f"agent-gateway contracts push {tmp_path}/pay") == [f"{tmp_path}/payload.json"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (apt-get install zsh)")
def test_zsh_completion_loads_and_completes(tmp_path: Path) -> None:
    script = tmp_path / "completion.zsh"
    script.write_text(_script("zsh"))
    program = (f"autoload -U compinit && compinit -u -d {tmp_path}/zcompdump; source {script}; "
               "COMP_WORDS=(agent-gateway breakers ''); COMP_CWORD=2; setopt ksharrays; _agent_gateway; "
               "print -l \"${COMPREPLY[@]}\"")  # fmt: skip
    done = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["list", "open", "close", "reset"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed (apt-get install fish)")
def test_fish_completion_offers_verbs_with_their_help(tmp_path: Path) -> None:
    script = tmp_path / "agent-gateway.fish"
    script.write_text(_script("fish"))

    def complete(line: str) -> list[str]:
        program = f"source {script}; complete -C '{line}'"
        done = subprocess.run(["fish", "--no-config", "-c", program], capture_output=True, text=True, timeout=30,
                              check=True, env={**os.environ, "HOME": str(tmp_path)})  # fmt: skip
        return done.stdout.splitlines()

    assert "tail\tfollow new handoffs live (Ctrl-C to stop)" in complete("agent-gateway runs ")
    assert complete("agent-gateway stats ") == ["failures\tfailures by route and MAST category"]
    assert any(line.startswith("resolved\t") for line in complete("agent-gateway dlq list --status "))


def test_the_completion_tree_is_the_parser() -> None:
    tree = dict(walk(_parser()))
    assert set(tree[""].commands) >= {"serve", "contracts", "runs", "dlq", "breakers", "stats", "completion"}
    assert tree["runs tail"].valued == ["--admin-url", "--run"]
    assert tree["contracts push"].files
