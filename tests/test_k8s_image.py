"""The image, read from the Dockerfile (no docker here): a base pinned by digest, an install from the hashed lock
file, OCI labels, a numeric non-root user, the admin API left on loopback, and a HEALTHCHECK that is run for real
against a gateway's health listener."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from gateway.app import RunningGateway
from gateway.config import load_config
from tests.conftest import free_port, gateway_config

ROOT = Path(__file__).resolve().parent.parent
Instruction = tuple[str, str]


def instructions(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and the parser directive dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


DOCKERFILE = instructions()


def arguments(name: str) -> list[str]:
    return [args for instruction, args in DOCKERFILE if instruction == name]


def pairs(text: str) -> dict[str, str]:
    """``KEY=value KEY2="value 2"`` (ENV, LABEL, ARG) as a dict."""
    return dict(word.split("=", 1) for word in shlex.split(text) if "=" in word)


def final_stage() -> list[Instruction]:
    last_from = max(i for i, (instruction, _) in enumerate(DOCKERFILE) if instruction == "FROM")
    return DOCKERFILE[last_from:]


def test_the_base_image_is_pinned_by_digest() -> None:
    base = pairs(arguments("ARG")[0])["BASE"]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert {args.split()[0] for args in arguments("FROM")} == {"${BASE}"}  # every stage, no second unpinned base


def test_dependencies_are_installed_from_the_hashed_lock_file() -> None:
    runs = " ".join(arguments("RUN"))
    assert "pip install --require-hashes -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs  # the project adds nothing unlocked
    lock = (ROOT / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock)  # one requirement with its hash lines each
    pinned = {}
    for entry in entries:
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", entry)
        if match:
            assert "--hash=sha256:" in entry, match[1]
            pinned[match[1].lower().replace("_", "-")] = match[2]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["redis"]]
    names = {re.match(r"[A-Za-z0-9_.-]+", spec)[0].lower().replace("_", "-") for spec in wanted}  # type: ignore[index]
    assert names <= pinned.keys(), names - pinned.keys()


def test_oci_labels() -> None:
    labels = pairs(" ".join(args for instruction, args in final_stage() if instruction == "LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert labels["org.opencontainers.image.licenses"] == licence


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for instruction, args in final_stage() if instruction == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) > 0, users  # noqa: PT018 - one fact: a numeric uid that is not root
    assert gid.isdigit() and int(gid) > 0, users  # noqa: PT018
    order = [instruction for instruction, _ in final_stage()]
    assert order.index("USER") < order.index("ENTRYPOINT")


def image_environment() -> dict[str, str]:
    return pairs(" ".join(args for instruction, args in final_stage() if instruction == "ENV"))


def test_the_image_settings_keep_admin_on_loopback_and_health_on() -> None:
    settings = {k: v for k, v in image_environment().items() if k.startswith("AGENT_GATEWAY_")}
    config = load_config(environ=settings)
    assert config.admin.host == "127.0.0.1"
    assert config.admin.token is None  # the token comes from the deployment (a Secret), never the image
    assert config.health.port == 9902
    exposed = {int(port) for args in arguments("EXPOSE") for port in args.split()}
    assert exposed == {config.listen.port, config.health.port}  # not the admin port
    assert json.loads(arguments("ENTRYPOINT")[0]) == ["agent-gateway", "serve"]


def healthcheck_command() -> list[str]:
    (text,) = arguments("HEALTHCHECK")
    command = text[text.index("CMD ") + 4 :]
    parsed: list[str] = json.loads(command)  # exec form: a JSON array, no shell needed in the image
    return parsed


def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    assert command[0] == "python"
    env = {"AGENT_GATEWAY_HEALTH__PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode


async def test_the_healthcheck_passes_against_the_health_listener_and_fails_without_it(
    make_gateway: Any,
) -> None:
    gateway: RunningGateway = await make_gateway(
        gateway_config([], admin={"token": None}, health={"host": "127.0.0.1", "port": 0})
    )
    assert gateway.health_url is not None
    port = int(gateway.health_url.rsplit(":", 1)[1])
    assert await asyncio.to_thread(run_healthcheck, port) == 0
    assert await asyncio.to_thread(run_healthcheck, free_port()) == 1


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    """.dockerignore excludes everything but an allow-list; a COPY of anything else would fail the build."""
    copied = {word for args in arguments("COPY") if "--from" not in args for word in args.split()[:-1]}
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert copied == kept
