"""The embedded SQLite store: registrations, activations and routes survive a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from gateway.admin.client import AdminClient
from gateway.app import start_gateway
from gateway.store.sqlite import SQLiteStore
from tests.conftest import TOKEN, Upstream, contract, gateway_config


async def test_contracts_versions_and_routes_survive_restart(
    tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    config = gateway_config([], store={"path": str(tmp_path / "gw.db")})
    first = await start_gateway(config)
    try:
        async with AdminClient(first.admin_url, TOKEN) as admin:
            await admin.put_route("agent", {"upstream": upstream.url})
            await admin.request("PUT", "/contracts/agent.tasks", body=contract())
            await admin.request("PUT", "/contracts/agent.tasks", body=contract(mode="shadow"))
            await admin.request("POST", "/contracts/agent.tasks/activate", body={"version": 1})
    finally:
        await first.close()

    second = await start_gateway(config)
    try:
        async with http.post(f"{second.data_url}/agent/tasks", json={"bad": True}) as resp:
            assert resp.status == 422  # route and enforced v1 came back from disk
            assert (await resp.json(content_type=None))["version"] == 1
        async with AdminClient(second.admin_url, TOKEN) as admin:
            versions = await admin.request("GET", "/contracts/agent.tasks/versions")
            assert [(v["version"], v["active"], v["document"].get("mode", None)) for v in versions["versions"]] == [
                (1, True, None),
                (2, False, "shadow"),
            ]
            assert (await admin.request("PUT", "/contracts/agent.tasks", body=contract()))["version"] == 1  # unchanged
            changed = contract(description="numbering continues after a restart")
            assert (await admin.request("PUT", "/contracts/agent.tasks", body=changed))["version"] == 3
    finally:
        await second.close()


async def test_contract_dirs_register_once_and_only_on_change(tmp_path: Path, upstream: Upstream) -> None:
    import yaml

    directory = tmp_path / "contracts"
    directory.mkdir()
    (directory / "tasks.yaml").write_text(yaml.safe_dump(contract()))
    config = gateway_config(
        [{"name": "agent", "upstream": upstream.url}],
        store={"path": str(tmp_path / "gw.db")},
        contract_dirs=[str(directory)],
    )
    for expected_version in (1, 1, 2):
        if expected_version == 2:
            (directory / "tasks.yaml").write_text(yaml.safe_dump(contract(mode="shadow")))
        gw = await start_gateway(config)
        try:
            active = gw.state.contracts.table.get("agent.tasks")
            assert active is not None
            assert active.version == expected_version
        finally:
            await gw.close()


async def test_store_versions_are_sequential_per_id() -> None:
    store = SQLiteStore(":memory:")
    try:
        versions = [(await store.add_version("contract", cid, {"n": n})).version for n, cid in enumerate("aaba")]
        assert versions == [1, 2, 1, 3]
        assert (await store.add_version("policy", "a", {"p": 1})).version == 1  # kinds are separate namespaces
        assert [s.document for s in await store.list_versions("contract", "a")] == [{"n": 0}, {"n": 1}, {"n": 3}]
        assert await store.get_version("contract", "a", 9) is None
        heads: list[Any] = await store.list_heads("contract")
        assert [(h.id, h.latest_version, h.active_version) for h in heads] == [("a", 3, None), ("b", 1, None)]
    finally:
        await store.close()


async def test_a_store_file_from_before_claim_owners_still_serves_checkpoints(tmp_path: Path) -> None:
    import sqlite3
    import time

    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE checkpoints (key TEXT PRIMARY KEY, request_digest TEXT NOT NULL, state TEXT NOT NULL,"
        " expires_at REAL NOT NULL, status INTEGER, headers BLOB, body BLOB)"
    )
    old.execute("INSERT INTO checkpoints VALUES ('kept', 'd', 'done', ?, 200, '{}', X'7B7D')", (time.time() + 60,))
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        kept = await store.claim_checkpoint("kept", "d", now=time.time(), ttl=30, owner="me")
        assert kept is not None
        assert (kept.state, kept.body, kept.owner) == ("done", b"{}", None)
        assert await store.claim_checkpoint("new", "d", now=time.time(), ttl=30, owner="me") is None
        assert await store.renew_checkpoint("new", "me", expires_at=time.time() + 60)
    finally:
        await store.close()
