"""The admin API: auth, contract versioning and rollback, dry runs, routes, OpenAPI."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.app import RunningGateway
from gateway.control.versioning import DocumentNotFound
from tests.conftest import TOKEN, Upstream, contract, gateway_config, replying


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}],
)
async def test_admin_refuses_missing_or_wrong_token(
    gateway: RunningGateway, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for method, path in [("GET", "/contracts"), ("PUT", "/contracts/x"), ("GET", "/routes")]:
        async with http.request(method, f"{gateway.admin_url}{path}", headers=headers, data=b"{}") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert (await resp.json(content_type=None))["type"].endswith("/unauthorized")
    assert len(gateway.state.contracts.table) == 0


async def test_health_and_openapi_need_no_token(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.admin_url}/healthz") as resp:
        assert resp.status == 200
    async with http.get(f"{gateway.admin_url}/readyz") as resp:
        assert (await resp.json())["status"] == "ok"
    async with http.get(f"{gateway.admin_url}/openapi.json") as resp:
        document = await resp.json()
    assert document["openapi"] == "3.1.0"
    assert {"put", "get", "delete"} <= set(document["paths"]["/contracts/{id}"])
    assert document["paths"]["/healthz"]["get"]["security"] == []


async def test_admin_is_not_served_on_the_data_port(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.data_url}/contracts", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 404  # no route: the data plane knows nothing of admin paths


async def test_without_token_the_admin_listener_does_not_start(make_gateway: Any, upstream: Upstream) -> None:
    gw = await make_gateway(gateway_config([], admin={"token": None}))
    assert gw.admin_url is None


async def test_insecure_admin_binds_loopback_without_auth(make_gateway: Any, http: aiohttp.ClientSession) -> None:
    gw = await make_gateway(gateway_config([], admin={"token": None, "host": "0.0.0.0"}), insecure_admin=True)
    assert gw.admin_runner.addresses[0][0] == "127.0.0.1"
    async with http.get(f"{gw.admin_url}/contracts") as resp:
        assert resp.status == 200


async def test_versioning_activation_rollback_and_history(
    gateway: RunningGateway, upstream: Upstream, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    upstream.handler = replying(b'{"result": "ok"}')
    first = await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    strict = contract(request={"body": {"type": "object", "required": ["must"]}})
    second = await admin.request("PUT", "/contracts/agent.tasks", body=strict)
    assert (first["version"], second["version"]) == (1, 2)
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        assert resp.status == 422  # v2 is enforced
    await admin.request("POST", "/contracts/agent.tasks/activate", body={"version": 1})
    async with http.post(f"{gateway.data_url}/agent/tasks", json={"task": "t", "priority": 1}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Contract-Verdict"].endswith("version=1")
    history = await admin.request("GET", "/contracts/agent.tasks/versions")
    assert [(v["version"], v["active"]) for v in history["versions"]] == [(1, True), (2, False)]
    assert (await admin.request("GET", "/contracts/agent.tasks/versions/2"))["document"]["request"] == strict["request"]
    assert (await admin.request("GET", "/contracts/agent.tasks"))["version"] == 1
    listed = await admin.request("GET", "/contracts")
    assert listed == {"contracts": [{"id": "agent.tasks", "latest_version": 2, "active_version": 1}]}


async def test_staged_registration_does_not_change_enforcement(
    gateway: RunningGateway, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    staged = await admin.request("PUT", "/contracts/agent.tasks?activate=false", body=contract(request={}))
    assert staged == {"id": "agent.tasks", "version": 2, "active": False}
    async with http.post(f"{gateway.data_url}/agent/tasks", json={}) as resp:
        assert resp.status == 422


async def test_delete_stops_enforcement_and_keeps_history(
    gateway: RunningGateway, admin: AdminClient, http: aiohttp.ClientSession
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    await admin.request("DELETE", "/contracts/agent.tasks")
    async with http.post(f"{gateway.data_url}/agent/tasks", json={}) as resp:
        assert resp.status == 200
    with pytest.raises(AdminAPIError) as info:
        await admin.request("GET", "/contracts/agent.tasks")
    assert info.value.status == 404
    assert len((await admin.request("GET", "/contracts/agent.tasks/versions"))["versions"]) == 1
    again = await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    assert again["version"] == 2


async def test_yaml_registration(gateway: RunningGateway, admin: AdminClient) -> None:
    registered = await admin.push_contract(yaml.safe_dump(contract()).encode(), "agent.tasks")
    assert registered == {"id": "agent.tasks", "version": 1, "active": True}


@pytest.mark.parametrize(
    ("document", "pointer", "fragment"),
    [
        (contract(route=None), "/route", "None is not of type 'string'"),
        (contract(operation={"method": "FETCH", "path": "/x"}), "/operation/method", "FETCH"),
        (contract(operation={"method": "GET", "path": "no-slash"}), "/operation/path", "does not match"),
        (contract(mode="strict"), "/mode", "strict"),
        (contract(failure_modes={"timeout": "explode"}), "/failure_modes/timeout", "explode"),
        (contract(responses={"299x": {}}), "/responses", "299x"),
        (contract(request={"body": {"type": "strng"}}), "/request/body/type", "strng"),
        (contract(request={"body": {"minLength": -1}}), "/request/body/minLength", "-1"),
        (contract(unknown=1), "", "unknown"),
        (contract(request={"body": {"$ref": "https://missing.test/x.json"}}), "", "missing.test"),
    ],
)
async def test_bad_contracts_get_a_400_saying_what_is_wrong(
    gateway: RunningGateway, admin: AdminClient, document: dict[str, Any], pointer: str, fragment: str
) -> None:
    with pytest.raises(AdminAPIError) as info:
        await admin.request("PUT", "/contracts/agent.tasks", body=document)
    assert info.value.status == 400
    problem = info.value.problem
    assert problem["type"].endswith("/invalid-contract")
    assert any(e["pointer"] == pointer and fragment in e["message"] for e in problem["errors"]), problem["errors"]
    assert await admin.request("GET", "/contracts") == {"contracts": []}


async def test_body_id_must_match_path(gateway: RunningGateway, admin: AdminClient) -> None:
    with pytest.raises(AdminAPIError) as info:
        await admin.request("PUT", "/contracts/other", body=contract())
    assert info.value.problem["errors"] == [{"pointer": "/id", "message": "expected 'other', got 'agent.tasks'"}]


async def test_garbage_admin_bodies_are_400(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path, body in [("/contracts/x", b"{{{"), ("/contracts/x", b"[1,2]"), ("/contracts/x/activate", b"{")]:
        method = "PUT" if path == "/contracts/x" else "POST"
        async with http.request(method, gateway.admin_url + path, data=body, headers=auth) as resp:
            assert resp.status == 400, path
            assert resp.content_type == "application/problem+json"


async def test_activate_unknown_version_is_404(gateway: RunningGateway, admin: AdminClient) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    with pytest.raises(AdminAPIError) as info:
        await admin.request("POST", "/contracts/agent.tasks/activate", body={"version": 9})
    assert info.value.status == 404


async def test_validate_dry_run_uses_the_same_verdicts(gateway: RunningGateway, admin: AdminClient) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    ok = await admin.request("POST", "/contracts/agent.tasks/validate", body={"payload": {"task": "a", "priority": 2}})
    bad = await admin.request("POST", "/contracts/agent.tasks/validate", body={"payload": {"task": 3}})
    response = await admin.request(
        "POST", "/contracts/agent.tasks/validate", body={"direction": "response", "payload": {}, "status": 200}
    )
    unchecked = await admin.request(
        "POST", "/contracts/agent.tasks/validate", body={"direction": "response", "payload": {}, "status": 500}
    )
    assert ok["valid"] is True
    assert ok["violation_count"] == 0
    assert bad["valid"] is False
    assert sorted(v["pointer"] for v in bad["violations"]) == ["", "/task"]
    assert response["violations"] == [
        {"pointer": "", "keyword": "required", "message": '"result" is a required property'}
    ]
    assert unchecked == {**unchecked, "valid": True, "checked": False}


async def test_routes_crud_applies_without_restart(
    gateway: RunningGateway, admin: AdminClient, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    other = await make_upstream(None)
    await admin.put_route("other", {"upstream": other.url, "prefix": "/o"})
    async with http.get(f"{gateway.data_url}/o/hello") as resp:
        assert resp.status == 200
    assert other.seen[0].path == "/hello"
    assert (await admin.request("GET", "/routes/other"))["prefix"] == "/o"
    await admin.request("DELETE", "/routes/other")
    async with http.get(f"{gateway.data_url}/o/hello") as resp:
        assert resp.status == 404
    with pytest.raises(AdminAPIError) as info:
        await admin.put_route("bad", {"upstream": "ftp://x"})
    assert info.value.status == 400


HUGE = 32789262276938185918855734362112


@pytest.mark.parametrize("collection", ["contracts", "policies"])
@pytest.mark.parametrize("version", [HUGE, 2**63, 2**31, 0, -1, "1", 1.5, True])
async def test_out_of_range_versions_are_a_400_problem(
    gateway: RunningGateway, http: aiohttp.ClientSession, collection: str, version: Any
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{gateway.admin_url}/{collection}/x/activate"
    async with http.post(url, data=f'{{"version": {json.dumps(version)}}}', headers=auth) as resp:
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["errors"][0]["pointer"] == "/version"


@pytest.mark.parametrize("segment", [str(HUGE), "2147483648", "0", "-1", "+1", " 1", "1_0", "\u0663", "x"])
async def test_out_of_range_path_versions_are_a_400_problem(
    gateway: RunningGateway, http: aiohttp.ClientSession, segment: str
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{gateway.admin_url}/contracts/x/versions/{quote(segment)}", headers=auth) as resp:
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "query", ["/dlq?limit=" + str(HUGE), "/runs?limit=1001", "/stats/failures?window=" + "9" * 400, "/dlq?status=x"]
)
async def test_out_of_range_queries_are_a_400_problem(
    gateway: RunningGateway, http: aiohttp.ClientSession, query: str
) -> None:
    async with http.get(gateway.admin_url + query, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        b'{"payload": {"n": 32789262276938185918855734362112}}',  # orjson cannot store it: was a 500
        b'{"payload": NaN}',
    ],
)
async def test_unstorable_json_values_are_a_400_problem(
    gateway: RunningGateway, admin: AdminClient, http: aiohttp.ClientSession, body: bytes
) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(f"{gateway.admin_url}/contracts/agent.tasks/validate", data=body, headers=auth) as resp:
        assert resp.status == 400, await resp.text()
    yaml_body = b'id: agent.tasks\nroute: agent\noperation: {method: POST, path: /t}\ndescription: "\\ud800"\n'
    async with http.put(f"{gateway.admin_url}/contracts/agent.tasks", data=yaml_body, headers=auth) as resp:
        assert resp.status == 400, await resp.text()  # a lone surrogate: was a 500 when stored


async def test_store_level_lookups_refuse_out_of_range_versions(gateway: RunningGateway) -> None:
    for registry in (gateway.state.contracts, gateway.state.policies):
        for version in (0, -1, 2**31, HUGE):
            with pytest.raises(DocumentNotFound):
                await registry.version("x", version)
            with pytest.raises(DocumentNotFound):
                await registry.activate("x", version)


async def test_405_keeps_allow_and_no_server_version_is_sent(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.request("PATCH", f"{gateway.admin_url}/routes", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 405
        assert r.content_type == "application/problem+json"
        assert r.headers["Allow"] == "GET"
        assert r.headers["Server"] == "agent-gateway"
    async with http.get(f"{gateway.admin_url}/healthz") as resp:
        assert "Python" not in resp.headers["Server"]


async def test_healthz_reports_liveness_without_counts(gateway: RunningGateway, admin: AdminClient) -> None:
    await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    assert await admin.request("GET", "/healthz") == {"status": "ok"}
    assert await admin.request("GET", "/readyz") == {"status": "ok", "routes": 1, "contracts": 1}


async def test_staged_documents_can_be_deleted_idempotently(gateway: RunningGateway, admin: AdminClient) -> None:
    await admin.request("PUT", "/contracts/agent.tasks?activate=false", body=contract())
    await admin.request("DELETE", "/contracts/agent.tasks")  # nothing in force: already out of force
    with pytest.raises(AdminAPIError) as info:
        await admin.request("DELETE", "/contracts/never.registered")
    assert info.value.status == 404
    with pytest.raises(AdminAPIError) as info:
        await admin.request("PUT", "/contracts/agent.tasks?activate=maybe", body=contract())
    assert info.value.status == 400


async def test_openapi_states_bounds_bodies_statuses_and_security(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.admin_url}/openapi.json") as resp:
        document = await resp.json()
    schemas = document["components"]["schemas"]
    get_version = document["paths"]["/contracts/{id}/versions/{version}"]["get"]
    version = next(p for p in get_version["parameters"] if p["name"] == "version")
    assert version["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert set(get_version["responses"]) == {"200", "400", "401", "404"}
    assert "default" not in get_version["responses"]
    put = document["paths"]["/contracts/{id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ContractDocument"
    }
    assert schemas["ContractDocument"]["properties"]["operation"]["required"] == ["method", "path"]
    assert {"ContractDocument.schema", "PolicyDocument"} <= set(schemas)
    assert schemas["RouteBody"]["properties"]["upstream"]["pattern"].startswith("^https?://")
    assert schemas["ActivateRequest"]["properties"]["version"]["maximum"] == 2**31 - 1
    assert document["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert put["responses"]["401"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


async def test_an_unchanged_document_mints_no_new_version(gateway: RunningGateway, admin: AdminClient) -> None:
    """Pushing the same files again (CI, a re-applied ConfigMap) changes nothing; a changed one is version 2."""
    first = await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    again = await admin.request("PUT", "/contracts/agent.tasks", body=contract())
    bulk = await admin.request("POST", "/contracts", body={"contracts": [contract()]})
    assert first["version"] == again["version"] == bulk["registered"][0]["version"] == 1
    changed = await admin.request("PUT", "/contracts/agent.tasks", body=contract(description="now documented"))
    assert changed["version"] == 2
    versions = await admin.request("GET", "/contracts/agent.tasks/versions")
    assert [v["version"] for v in versions["versions"]] == [1, 2]


@pytest.mark.parametrize(("stored", "sent"), [(False, 0), (True, 1), (1, 1.0)])
async def test_unchanged_means_the_same_json_not_equal_in_python(
    gateway: RunningGateway, admin: AdminClient, stored: Any, sent: Any
) -> None:
    """``0 == False`` and ``1 == 1.0`` in Python, not in JSON: a document differing only so is a new document,
    checked as such (``{"schema": 0}`` is no schema and is refused; ``minLength: 1.0`` is a new version)."""
    schema = stored if isinstance(stored, bool) else {"type": "object", "minProperties": stored}
    await admin.request("PUT", "/contracts/agent.tasks", body=contract(structured_output={"schema": schema}))
    changed = sent if isinstance(stored, bool) else {"type": "object", "minProperties": sent}
    body = contract(structured_output={"schema": changed})
    if isinstance(stored, bool):
        with pytest.raises(AdminAPIError) as refused:
            await admin.request("PUT", "/contracts/agent.tasks", body=body)
        assert refused.value.status == 400
    else:
        assert (await admin.request("PUT", "/contracts/agent.tasks", body=body))["version"] == 2


async def test_openapi_describes_the_dry_run_answer(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.admin_url}/openapi.json") as resp:
        responses = (await resp.json())["paths"]["/contracts"]["post"]["responses"]
    assert responses["200"]["description"].startswith("Dry run")
    assert responses["201"]["description"] != responses["200"]["description"]
