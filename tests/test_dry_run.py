"""Dry run of a registration: ``POST /contracts|/policies?dry_run=true`` and ``agent-gateway contracts diff`` /
``push --dry-run`` say what would change per document, with JSON-pointer changes, and change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway
from gateway.control.jsondiff import json_changes
from tests.conftest import Upstream, contract
from tests.test_cli_operations import cli

OTHER = contract(id="agent.other", operation={"method": "POST", "path": "/other"})
NEW = contract(id="agent.new", operation={"method": "POST", "path": "/new"})


def stricter() -> dict[str, Any]:
    document = contract(description="priority 5 and up")
    document["request"]["body"]["properties"]["priority"]["minimum"] = 5
    del document["request"]["body"]["properties"]["tags"]
    return document


STRICTER_CHANGES = [
    {"op": "add", "path": "/description", "value": "priority 5 and up"},
    {"op": "replace", "path": "/request/body/properties/priority/minimum", "old": 0, "value": 5},
    {"op": "remove", "path": "/request/body/properties/tags", "old": {"type": "array", "items": {"type": "string"}}},
]


async def heads(admin: AdminClient, collection: str = "contracts") -> Any:
    return (await admin.request("GET", f"/{collection}"))[collection]


async def test_a_dry_run_reports_each_document_and_changes_nothing(
    gateway: RunningGateway, admin: AdminClient, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    await admin.request("POST", "/contracts", body={"contracts": [contract(), OTHER]})
    before = await heads(admin)

    answer = await admin.request("POST", "/contracts?dry_run=true", body={"contracts": [stricter(), OTHER, NEW]})

    assert answer == {
        "dry_run": True,
        "documents": [
            {"id": "agent.tasks", "change": "new_version", "active_version": 1, "changes": STRICTER_CHANGES},
            {"id": "agent.other", "change": "unchanged", "active_version": 1, "changes": []},
            {"id": "agent.new", "change": "created", "active_version": None,
             "changes": [{"op": "add", "path": f"/{key}", "value": value}
                         for key, value in sorted(NEW.items())]},
        ],
    }  # fmt: skip
    assert await heads(admin) == before  # no version stored, none activated
    assert gateway.state.contracts.active_spec("agent.new") is None
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        assert resp.status != 422  # still enforced by version 1 (the echo agent's answer aside)


async def test_a_dry_run_refuses_what_registration_would_and_stores_nothing(admin: AdminClient) -> None:
    broken = contract(request={"body": {"type": 7}})
    with pytest.raises(AdminAPIError) as refused:
        await admin.request("POST", "/contracts?dry_run=true", body={"contracts": [contract(), broken]})
    assert refused.value.status == 400
    assert refused.value.problem["errors"][0]["pointer"] == "/request/body/type"
    assert await heads(admin) == []


async def test_a_staged_dry_run_of_the_same_document_is_a_new_version(admin: AdminClient) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    answer = await admin.request("POST", "/contracts?dry_run=true&activate=false", body={"contracts": [contract()]})
    assert answer["documents"] == [{"id": "agent.tasks", "change": "new_version", "active_version": 1, "changes": []}]


async def test_policies_have_a_dry_run_too(admin: AdminClient) -> None:
    policy = {"id": "p", "attach": {"route": "agent"}, "retry": {"max_attempts": 2}}
    await admin.request("PUT", "/policies/p", body=policy)
    changed = {**policy, "retry": {"max_attempts": 4}}
    answer = await admin.request("POST", "/policies?dry_run=true", body={"policies": [changed]})
    assert answer["documents"] == [
        {"id": "p", "change": "new_version", "active_version": 1,
         "changes": [{"op": "replace", "path": "/retry/max_attempts", "old": 2, "value": 4}]}
    ]  # fmt: skip
    assert [(h["id"], h["latest_version"]) for h in await heads(admin, "policies")] == [("p", 1)]


async def test_contracts_diff_and_push_dry_run_from_the_command_line(
    gateway: RunningGateway, admin: AdminClient, tmp_path: Path
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    same, changed = tmp_path / "same.yaml", tmp_path / "changed.yaml"
    same.write_text(yaml.safe_dump(contract()))
    changed.write_text(yaml.safe_dump(stricter()))

    assert await cli(gateway, "contracts", "diff", str(same)) == (
        0, "ID           CHANGE     ACTIVE\nagent.tasks  unchanged  1\n", ""
    )  # fmt: skip
    code, out, err = await cli(gateway, "contracts", "diff", str(changed))
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "ID           CHANGE       ACTIVE",
        "agent.tasks  new_version  1",
        "",
        "agent.tasks:",
        '  + /description: "priority 5 and up"',
        "  ~ /request/body/properties/priority/minimum: 0 -> 5",
        '  - /request/body/properties/tags: {"type":"array","items":{"type":"string"}}',
    ]
    code, out, _ = await cli(gateway, "contracts", "push", "--dry-run", "--json", str(changed))
    assert (code, json.loads(out)["documents"][0]["changes"]) == (0, STRICTER_CHANGES)
    assert [h["latest_version"] for h in await heads(admin)] == [1]  # neither stored anything

    assert (await cli(gateway, "contracts", "push", "--json", str(changed)))[0] == 0
    assert [h["latest_version"] for h in await heads(admin)] == [2]  # the push without --dry-run does


# -- the diff itself ---------------------------------------------------------------------------------------


def apply(document: Any, changes: list[dict[str, Any]]) -> Any:
    """The changes applied in order as JSON Patch operations (RFC 6902 add/remove/replace)."""
    root = {"": document}
    for change in changes:
        *parents, last = ["", *[t.replace("~1", "/").replace("~0", "~") for t in change["path"].split("/")[1:]]]
        node: Any = root
        for token in parents:
            node = node[int(token) if isinstance(node, list) else token]
        key: Any = int(last) if isinstance(node, list) else last
        if change["op"] == "remove":
            assert node[key] == change["old"]
            del node[key]
        elif change["op"] == "add" and isinstance(node, list):
            node.insert(key, change["value"])
        else:
            assert change["op"] == "add" or node[key] == change["old"]
            node[key] = change["value"]
    return root[""]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2, allow_nan=False) | st.sampled_from("ab~/"),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "x/y", "~"]), inner, max_size=4)
    ),
    max_leaves=12,
)


def canonical(value: Any) -> str:
    """Equal JSON text: member order aside, and 1, 1.0 and true kept apart (a schema tells them apart)."""
    return json.dumps(value, sort_keys=True)


@settings(max_examples=200, deadline=None)
@given(JSON, JSON)
def test_the_changes_turn_the_old_document_into_the_new_one(old: Any, new: Any) -> None:
    changes = json_changes(old, new)
    assert canonical(apply(json.loads(json.dumps(old)), changes)) == canonical(new)
    assert (changes == []) == (canonical(old) == canonical(new))


def test_equal_numbers_of_another_type_are_a_change() -> None:
    assert json_changes({"a": 1}, {"a": True}) == [{"op": "replace", "path": "/a", "old": 1, "value": True}]
    assert json_changes([1, 2, 3], [1]) == [
        {"op": "remove", "path": "/2", "old": 3},
        {"op": "remove", "path": "/1", "old": 2},
    ]
