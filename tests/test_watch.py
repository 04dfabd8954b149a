"""contract_dirs/policy_dirs watched by a live gateway: a ConfigMap volume updated the kubelet's way (new
timestamped directory, new ``..data_tmp`` symlink renamed over ``..data``) changes enforcement without a restart;
an unchanged rescan mints nothing; a broken file changes nothing and is logged with its path; a removed file
stays in force with a warning."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.app import RunningGateway
from gateway.control.watch import fingerprint
from tests.conftest import Handler, Upstream, contract, eventually, gateway_config, replying

VALID = {"task": "plan", "priority": 1}
"""Accepted by ``contract()``; refused once ``priority`` must be at least 5."""
STRICTER = contract(
    request={"body": {"type": "object", "required": ["task", "priority"],
                      "properties": {"task": {"type": "string"}, "priority": {"type": "integer", "minimum": 5}}}}
)  # fmt: skip


class ConfigMapVolume:
    """A directory the way the kubelet mounts a ConfigMap: ``name -> ..data/name``, ``..data -> ..<timestamp>``.
    :meth:`update` does what the kubelet does on a change (``AtomicWriter``): write the new timestamped
    directory, point a new ``..data_tmp`` at it, rename that over ``..data``, then remove the old directory."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.generation = 0
        path.mkdir()
        self._current: Path | None = None
        self.update(data)

    def update(self, data: dict[str, Any]) -> None:
        self.generation += 1
        payload = self.path / f"..2026_01_01_00_00_{self.generation:02d}.000000001"
        payload.mkdir()
        for name, document in data.items():
            text = document if isinstance(document, str) else yaml.safe_dump(document)
            (payload / name).write_text(text)
        (self.path / "..data_tmp").symlink_to(payload.name)
        os.rename(self.path / "..data_tmp", self.path / "..data")
        for name in data:
            if not (self.path / name).is_symlink():
                (self.path / name).symlink_to(f"..data/{name}")
        for stale in self.path.iterdir():  # keys no longer in the ConfigMap, then the old payload
            if stale.is_symlink() and stale.name != "..data" and not stale.exists():
                stale.unlink()
        if self._current is not None:
            for file in self._current.iterdir():
                file.unlink()
            self._current.rmdir()
        self._current = payload


Make = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def agent(make_upstream: Callable[[Handler], Awaitable[Upstream]]) -> Upstream:
    """An agent whose answer every contract here accepts: only the request side changes."""
    return await make_upstream(replying(b'{"result": "ok"}'))


async def watched(make_gateway: Make, agent: Upstream, volume: ConfigMapVolume, **more: Any) -> RunningGateway:
    config = gateway_config([{"name": "agent", "upstream": agent.url}], contract_dirs=[str(volume.path)], **more)
    return await make_gateway(config)


async def status_of(http: aiohttp.ClientSession, gateway: RunningGateway, body: dict[str, Any]) -> int:
    async with http.post(f"{gateway.data_url}/agent/tasks", json=body) as answer:
        await answer.read()
        return answer.status


async def versions(gateway: RunningGateway, doc_id: str = "agent.tasks") -> list[int]:
    return [v.version for v in await gateway.state.contracts.versions(doc_id)]


async def test_a_configmap_swap_changes_enforcement_without_a_restart(
    make_gateway: Make, agent: Upstream, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract()})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0.02)
    assert await status_of(http, gateway, VALID) == 200

    volume.update({"tasks.yaml": STRICTER})

    async def refused() -> bool:
        return await status_of(http, gateway, VALID) == 422

    await eventually(refused, what="the new contract in force")
    assert await versions(gateway) == [1, 2]
    assert gateway.state.contracts.active_version("agent.tasks") == 2


async def test_mutually_referencing_contracts_land_in_one_scan(
    make_gateway: Make, agent: Upstream, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A contract that starts using a shared schema published by another file of the same commit: applied one
    by one, whichever came first would be refused (dangling reference) or enforce half the change."""
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract()})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0.02)
    shared = {"$id": "https://example.test/priority.json", "type": "integer", "minimum": 5}
    publisher = contract(id="agent.shared", operation={"method": "GET", "path": "/shared"}, schemas=[shared])
    user = contract(request={"body": {"type": "object", "properties": {"priority": {"$ref": shared["$id"]}}}})
    volume.update({"a-tasks.yaml": user, "z-shared.yaml": publisher})  # the user sorts first

    async def refused() -> bool:
        return await status_of(http, gateway, VALID) == 422

    await eventually(refused, what="both documents in force")
    assert (await versions(gateway), await versions(gateway, "agent.shared")) == ([1, 2], [1])


async def test_an_unchanged_rescan_mints_no_version(make_gateway: Make, agent: Upstream, tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract()})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0)
    assert gateway.watcher is not None
    before = fingerprint([volume.path])
    volume.update({"tasks.yaml": contract()})  # same content, new files: the fingerprint moves
    assert fingerprint([volume.path]) != before

    await gateway.watcher.scan()
    await gateway.watcher.scan(force=True)

    assert await versions(gateway) == [1]


async def test_a_broken_file_changes_nothing_and_is_logged_with_its_path(
    make_gateway: Make, agent: Upstream, http: aiohttp.ClientSession, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract()})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0)
    assert gateway.watcher is not None
    broken = contract(id="agent.other", operation={"method": "POST", "path": "/other"}, request={"body": 7})
    volume.update({"tasks.yaml": STRICTER, "z-other.yaml": broken})  # read after the valid change

    with caplog.at_level(logging.ERROR, logger="agent_gateway.watch"):
        await gateway.watcher.scan()

    assert await status_of(http, gateway, VALID) == 200  # the valid change of the same commit is not applied
    assert await versions(gateway) == [1]
    assert gateway.state.contracts.active_version("agent.other") is None
    (record,) = caplog.records
    assert record.path == str(volume.path / "z-other.yaml")  # type: ignore[attr-defined]
    assert "other.yaml" in record.getMessage()
    assert [e["pointer"] for e in record.errors] == ["/request/body"]  # type: ignore[attr-defined]

    volume.update({"tasks.yaml": STRICTER, "z-other.yaml": "{not: [valid"})  # not even YAML
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="agent_gateway.watch"):
        await gateway.watcher.scan()
    assert "z-other.yaml: not valid JSON or YAML" in caplog.records[0].getMessage()

    volume.update({"tasks.yaml": STRICTER})  # the fix arrives: now the change applies
    await gateway.watcher.scan()
    assert await status_of(http, gateway, VALID) == 422


async def test_a_conflicting_batch_names_no_single_file_and_applies_nothing(
    make_gateway: Make, agent: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract()})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0)
    assert gateway.watcher is not None
    volume.update({"tasks.yaml": STRICTER, "copy.yaml": STRICTER})  # one id in two files

    with caplog.at_level(logging.ERROR, logger="agent_gateway.watch"):
        await gateway.watcher.scan()

    assert await versions(gateway) == [1]
    (record,) = caplog.records
    assert record.path is None  # type: ignore[attr-defined]
    assert "the changed files together" in record.getMessage()


async def test_a_removed_file_stays_in_force_with_a_warning(
    make_gateway: Make, agent: Upstream, http: aiohttp.ClientSession, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    other = contract(id="agent.other", operation={"method": "POST", "path": "/other"})
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract(), "other.yaml": other})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0)
    assert gateway.watcher is not None
    volume.update({"other.yaml": other})

    with caplog.at_level(logging.WARNING, logger="agent_gateway.watch"):
        await gateway.watcher.scan()

    assert gateway.state.contracts.active_version("agent.tasks") == 1
    assert await status_of(http, gateway, {"bad": True}) == 422
    assert [r.getMessage() for r in caplog.records] == [
        f"contract 'agent.tasks': its file {volume.path / 'tasks.yaml'} is gone; it stays in force "
        "(deactivate it through the admin API)"
    ]


async def test_policy_dirs_are_watched_too(make_gateway: Make, agent: Upstream, tmp_path: Path) -> None:
    policy = {"id": "agent.policy", "attach": {"route": "agent"}, "retry": {"max_attempts": 2}}
    volume = ConfigMapVolume(tmp_path / "policies", {"policy.yaml": policy})
    config = gateway_config([{"name": "agent", "upstream": agent.url}], policy_dirs=[str(volume.path)],
                            watch_interval=0)  # fmt: skip
    gateway = await make_gateway(config)
    assert gateway.watcher is not None
    volume.update({"policy.yaml": {**policy, "retry": {"max_attempts": 3}}})

    await gateway.watcher.scan()

    assert gateway.state.policies.table.lookup("agent", None).retry.max_attempts == 3  # type: ignore[union-attr]
    assert [v.version for v in await gateway.state.policies.versions("agent.policy")] == [1, 2]


async def test_no_dirs_no_watcher(gateway: RunningGateway) -> None:
    assert (gateway.watcher, gateway.watching, gateway.rescan()) == (None, None, False)


async def test_a_missing_directory_is_reported_once_and_read_when_it_appears(
    make_gateway: Make, agent: Upstream, http: aiohttp.ClientSession, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": contract()})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0)
    assert gateway.watcher is not None
    moved = volume.path.rename(tmp_path / "elsewhere")

    with caplog.at_level(logging.ERROR, logger="agent_gateway.watch"):
        await gateway.watcher.scan()
        await gateway.watcher.scan()

    assert [r.path for r in caplog.records] == [str(volume.path)]  # type: ignore[attr-defined]
    assert "No such file or directory" in caplog.records[0].getMessage()
    moved.rename(volume.path)
    volume.update({"tasks.yaml": STRICTER})
    await gateway.watcher.scan()
    assert await status_of(http, gateway, VALID) == 422


async def test_a_change_python_calls_equal_is_a_change(make_gateway: Make, agent: Upstream, tmp_path: Path) -> None:
    """``1 == True`` in Python; ``{"const": 1}`` and ``{"const": true}`` are different schemas."""
    one = contract(request={"body": {"type": "object", "properties": {"flag": {"const": 1}}}})
    volume = ConfigMapVolume(tmp_path / "contracts", {"tasks.yaml": one})
    gateway = await watched(make_gateway, agent, volume, watch_interval=0)
    assert gateway.watcher is not None
    volume.update(
        {"tasks.yaml": contract(request={"body": {"type": "object", "properties": {"flag": {"const": True}}}})}
    )

    await gateway.watcher.scan()

    assert await versions(gateway) == [1, 2]
