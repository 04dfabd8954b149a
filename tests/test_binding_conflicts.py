"""One request is governed by one contract: a second contract for the same route + method + path is refused.

Before, both registrations answered 201 and only the first contract was enforced, so the second one's author
believed a check was in force that never ran. Every spelling of the same binding (another parameter name, a
trailing slash, an escaped letter) is the same binding; templates that both match some path with neither more
specific are refused too, since the matcher could only pick one by registration order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway
from gateway.store.sqlite import SQLiteStore
from tests.conftest import TOKEN, Upstream, contract, gateway_config

STRICT_BODY = {"type": "object", "required": ["strict"]}


def bound(contract_id: str, path: str, method: str = "POST", route: str = "agent") -> dict[str, Any]:
    """A contract on ``method path`` whose request body must carry ``contract_id`` as a property."""
    body = {"type": "object", "required": [contract_id]}
    return contract(id=contract_id, route=route, operation={"method": method, "path": path}, request={"body": body})


async def refused(admin: AdminClient, method: str, path: str, body: Any) -> dict[str, Any]:
    with pytest.raises(AdminAPIError) as info:
        await admin.request(method, path, body=body)
    assert info.value.status == 409, info.value.problem
    problem: dict[str, Any] = dict(info.value.problem)
    assert problem["type"].endswith("/conflict")
    return problem


@pytest.mark.parametrize(
    ("held", "claimed"),
    [
        ("/tasks/{id}", "/tasks/{id}"),
        ("/tasks/{id}", "/tasks/{task_id}"),
        ("/plan", "/plan/"),
        ("/plan", "//plan"),
        ("/plan", "/pl%61n"),
        ("/{a}/x", "/x/{b}"),  # both match /x/x, neither is more specific
    ],
)
async def test_a_second_contract_on_the_same_binding_is_refused_naming_the_holder(
    gateway: RunningGateway, admin: AdminClient, held: str, claimed: str
) -> None:
    await admin.request("PUT", "/contracts/first", body=bound("first", held))
    second_version = {**bound("first", held), "description": "v2"}
    await admin.request("PUT", "/contracts/first", body=second_version)  # a new version is no conflict
    problem = await refused(admin, "PUT", "/contracts/second", bound("second", claimed))
    assert "'first' version 2" in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/operation"
    with pytest.raises(AdminAPIError) as missing:
        await admin.request("GET", "/contracts/second")
    assert missing.value.status == 404
    assert gateway.state.contracts.table.get("second") is None


@pytest.mark.parametrize(
    ("held", "other"),
    [
        (("POST", "/tasks/{id}", "agent"), ("POST", "/tasks/latest", "agent")),  # the literal one is more specific
        (("POST", "/tasks", "agent"), ("PUT", "/tasks", "agent")),
        (("POST", "/tasks", "agent"), ("POST", "/tasks", "other")),
        (("POST", "/tasks", "agent"), ("POST", "/tasks/{id}", "agent")),
    ],
)
async def test_distinct_bindings_are_accepted(
    gateway: RunningGateway, admin: AdminClient, held: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    await admin.request("PUT", "/contracts/first", body=bound("first", held[1], held[0], held[2]))
    await admin.request("PUT", "/contracts/second", body=bound("second", other[1], other[0], other[2]))
    assert {c.id for c in gateway.state.contracts.table} == {"first", "second"}


async def test_the_holder_keeps_being_enforced(
    gateway: RunningGateway, admin: AdminClient, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/first", body=bound("first", "/tasks"))
    await refused(admin, "PUT", "/contracts/second", bound("second", "/tasks"))
    async with http.post(gateway.data_url + "/agent/tasks", json={"second": 1}) as resp:
        assert resp.status == 422
        assert (await resp.json(content_type=None))["contract"] == "first"


async def test_a_batch_with_two_documents_on_one_binding_stores_neither(
    gateway: RunningGateway, admin: AdminClient
) -> None:
    batch = {"contracts": [bound("first", "/tasks/{id}"), bound("second", "/tasks/{task}")]}
    problem = await refused(admin, "POST", "/contracts", batch)
    assert "'second'" in problem["detail"]
    assert "'first' (in the same registration)" in problem["detail"]
    assert (await admin.request("GET", "/contracts"))["contracts"] == []


async def test_a_batch_against_a_contract_in_force_names_it(gateway: RunningGateway, admin: AdminClient) -> None:
    await admin.request("PUT", "/contracts/first", body=bound("first", "/tasks"))
    problem = await refused(admin, "POST", "/contracts", {"contracts": [bound("second", "/tasks/")]})
    assert "'first' version 1" in problem["detail"]


async def test_activating_an_old_version_onto_a_taken_binding_is_refused(
    gateway: RunningGateway, admin: AdminClient
) -> None:
    await admin.request("PUT", "/contracts/first", body=bound("first", "/tasks"))
    await admin.request("PUT", "/contracts/first", body=bound("first", "/elsewhere"))
    await admin.request("PUT", "/contracts/second", body=bound("second", "/tasks"))
    problem = await refused(admin, "POST", "/contracts/first/activate", {"version": 1})
    assert "'second' version 1" in problem["detail"]
    assert gateway.state.contracts.active_version("first") == 2


async def test_conflicting_contracts_already_in_the_store_keep_the_first_registered(
    make_gateway: Any, upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store written before bindings were checked (or by two gateways at once) does not stop the gateway:
    the contract registered first keeps the binding, the later one is deactivated and logged."""
    path = str(tmp_path / "gateway.db")
    store = SQLiteStore(path)
    for contract_id in ("later", "earlier"):  # ids in the other order, so "first" is by registration, not name
        stored = await store.add_version("contract", contract_id, bound(contract_id, "/tasks"))
        await store.set_active("contract", contract_id, stored.version)
    await store.close()
    with caplog.at_level(logging.WARNING, logger="agent_gateway.contracts"):
        gw = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], store={"path": path}))
    assert [c.id for c in gw.state.contracts.table] == ["later"]
    assert any("'earlier'" in r.getMessage() and "deactivated" in r.getMessage() for r in caplog.records)
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        heads = {c["id"]: c["active_version"] for c in (await admin.request("GET", "/contracts"))["contracts"]}
    assert heads == {"later": 1, "earlier": None}


async def test_policies_on_one_target_already_in_the_store_keep_the_first_registered(
    make_gateway: Any, upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Policies follow the same rule as contracts: one per target; a store holding two starts with the first."""
    path = str(tmp_path / "gateway.db")
    store = SQLiteStore(path)
    for policy_id in ("later", "earlier"):
        stored = await store.add_version("policy", policy_id, {"id": policy_id, "attach": {"route": "agent"}})
        await store.set_active("policy", policy_id, stored.version)
    await store.close()
    with caplog.at_level(logging.WARNING, logger="agent_gateway.policies"):
        gw = await make_gateway(gateway_config([{"name": "agent", "upstream": upstream.url}], store={"path": path}))
    assert gw.state.policies.table.lookup("agent", None).id == "later"
    assert any("'earlier'" in r.getMessage() and "deactivated" in r.getMessage() for r in caplog.records)
