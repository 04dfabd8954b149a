"""Where the watched directories are (relative to the settings file, or to the working directory for variables),
and SIGHUP: a real ``agent-gateway serve`` with polling off rescans at once when signalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config
from tests.conftest import TOKEN, contract, eventually_blocking, free_port
from tests.test_startup import BASE_ENV, CLI


def test_relative_dirs_in_a_settings_file_resolve_against_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "etc" / "gateway.yaml"
    settings.parent.mkdir()
    settings.write_text("contract_dirs: [contracts, /abs/contracts]\npolicy_dirs: ../policies\n")
    monkeypatch.chdir(tmp_path)  # elsewhere than the file: a relative path must not mean the working directory

    config = load_config(settings, environ={})

    assert config.contract_dirs == (tmp_path / "etc" / "contracts", Path("/abs/contracts"))
    assert config.policy_dirs == (tmp_path / "etc" / ".." / "policies",)


def test_relative_dirs_from_variables_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "etc" / "gateway.yaml"
    settings.parent.mkdir()
    settings.write_text("contract_dirs: [contracts]\n")
    monkeypatch.chdir(tmp_path)
    environ = {"AGENT_GATEWAY_CONTRACT_DIRS": f"a{os.pathsep}b", "AGENT_GATEWAY_POLICY_DIRS": "p"}

    config = load_config(settings, environ=environ)

    assert config.contract_dirs == (Path("a"), Path("b"))  # the variable replaces the file's list
    assert [d.resolve() for d in config.contract_dirs] == [tmp_path / "a", tmp_path / "b"]
    assert config.policy_dirs == (Path("p"),)


def test_relative_dirs_from_the_command_line_are_kept_relative(tmp_path: Path) -> None:
    settings = tmp_path / "gateway.yaml"
    settings.write_text("contract_dirs: [contracts]\n")
    config = load_config(settings, environ={}, overrides={"contract_dirs": ["here"]})
    assert config.contract_dirs == (Path("here"),)


def _active_version(admin_port: int, process: subprocess.Popen[str]) -> Any:
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/contracts/agent.tasks")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=1) as answer:
        return json.load(answer)["version"]


def test_sighup_rescans_at_once_with_polling_off(tmp_path: Path) -> None:
    """watch_interval 0: nothing polls, so the new version can only come from the SIGHUP (without a handler,
    SIGHUP terminates the process and the admin API stops answering)."""
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "tasks.yaml").write_text(yaml.safe_dump(contract()))
    (tmp_path / "gateway.yaml").write_text(
        yaml.safe_dump({
            "listen": {"host": "127.0.0.1", "port": free_port()},
            "admin": {"host": "127.0.0.1", "port": (admin_port := free_port())},
            "store": {"path": str(tmp_path / "gw.db")},
            "routes": [{"name": "agent", "upstream": "http://127.0.0.1:9"}],
            "contract_dirs": ["contracts"],  # relative to the file: the subprocess runs elsewhere
            "watch_interval": 0,
        })
    )  # fmt: skip
    env = {**BASE_ENV, "AGENT_GATEWAY_ADMIN_TOKEN": TOKEN}
    process = subprocess.Popen(
        [*CLI, "serve", "--config", str(tmp_path / "gateway.yaml")], env=env, cwd="/", stderr=subprocess.PIPE, text=True
    )
    try:
        version = eventually_blocking(
            lambda: _active_version(admin_port, process), within=30, ignoring=(OSError,), what="v1 from the file"
        )
        assert version == 1
        (contracts / "tasks.yaml").write_text(yaml.safe_dump(contract(mode="shadow")))

        process.send_signal(signal.SIGHUP)

        eventually_blocking(lambda: _active_version(admin_port, process) == 2, ignoring=(OSError,), what="v2")
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert "rescanning contract_dirs and policy_dirs" in errors
    assert "contract documents from files in force: agent.tasks@2" in errors
