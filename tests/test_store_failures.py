"""The store can fail; the gateway must not answer 500.

A real ``redis-server`` per test, killed (SIGKILL) mid-traffic and restarted on the same port: keyed requests get a
relayed answer marked ``X-Checkpoint: bypass`` or a 503 problem as the policy says, unkeyed traffic keeps flowing,
an answer that arrives after the store died is never lost, stale-context lookups follow their own policy, and
audit records made during the outage reach the store once it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway
from gateway.config import GatewayConfig
from gateway.errors import StoreUnavailable
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SQLiteStore
from tests.conftest import (
    TOKEN,
    RedisServer,
    Upstream,
    contract,
    eventually,
    free_port,
    gateway_config,
    replying,
)

VALID = {"result": "ok"}
PROBLEM = "application/problem+json"


def redis_gateway_config(upstream: Upstream, server: RedisServer, **overrides: Any) -> Any:
    store = {"backend": "redis", "url": server.url, "prefix": f"t-{secrets.token_hex(4)}:"}
    return gateway_config([{"name": "agent", "upstream": upstream.url}], store=store, **overrides)


async def register(gw: RunningGateway, *contracts: dict[str, Any], policy: dict[str, Any] | None = None) -> None:
    async with AdminClient(gw.admin_url, TOKEN) as admin:
        await admin.request("POST", "/contracts", body={"contracts": list(contracts)})
        if policy is not None:
            await admin.request("PUT", f"/policies/{policy['id']}", body=policy)


def agent_policy(**members: Any) -> dict[str, Any]:
    return {"id": "agent-policy", "attach": {"route": "agent"}, **members}


async def post(http: aiohttp.ClientSession, gw: RunningGateway, path: str, body: Any, **headers: str) -> tuple[
    int, dict[str, str], Any
]:  # fmt: skip
    async with http.post(f"{gw.data_url}/agent{path}", json=body, headers=headers) as resp:
        raw = await resp.read()
        document = await resp.json(content_type=None) if raw else None
        return resp.status, dict(resp.headers), document


def assert_store_problem(status: int, headers: dict[str, str], document: Any) -> None:
    assert status == 503
    assert headers["Content-Type"] == PROBLEM
    assert headers["Retry-After"].isdigit()
    assert document["type"].endswith("/store-unavailable")


# -- checkpoints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_store_error", ["bypass", "refuse"])
async def test_redis_killed_mid_traffic_answers_keyed_posts_by_policy_never_500(
    on_store_error: str, redis_server: RedisServer, make_gateway: Any, upstream: Upstream,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    upstream.handler = replying(json.dumps(VALID).encode())
    gw = await make_gateway(redis_gateway_config(upstream, redis_server))
    await register(gw, contract(), policy=agent_policy(checkpoint={"on_store_error": on_store_error}))
    answers: list[tuple[bool, bool, int, dict[str, str], Any]] = []  # (after the kill, keyed, status, ...)
    killed = asyncio.Event()

    async def traffic() -> None:
        for n in range(10_000):
            keyed = n % 2 == 0
            headers = {"Idempotency-Key": f"k{n}"} if keyed else {}
            after = killed.is_set()
            answers.append((after, keyed, *await post(http, gw, "/tasks", {"task": "t", "priority": n}, **headers)))
            if sum(a[0] for a in answers) >= 40:
                return

    sender = asyncio.create_task(traffic())
    await eventually(lambda: len(answers) >= 20, what="traffic before the kill", within=20)
    redis_server.kill()
    killed.set()
    await sender

    assert all(status != 500 for _, _, status, _, _ in answers)
    assert all(s == 200 and "X-Checkpoint" not in h for _, keyed, s, h, _ in answers if not keyed)
    raced = 0  # the keyed request in flight when Redis died may have claimed before or after the kill
    for after, keyed, status, headers, document in answers:
        if not keyed:
            continue
        if not after and status == 503 and on_store_error == "refuse":
            raced += 1
            assert_store_problem(status, headers, document)
        elif not after or on_store_error == "bypass":  # before: stored (or, the one in flight at the kill: not)
            assert (status, document) == (200, VALID)
            assert headers["X-Checkpoint"] == ("bypass" if after else headers["X-Checkpoint"])
            assert headers["X-Checkpoint"] in ("stored", "bypass")
        else:
            assert_store_problem(status, headers, document)
    assert raced <= 1
    assert gw.state.store.failures["claim_checkpoint"] > 0

    redis_server.start()  # the client reconnects by itself: checkpoints work again

    async def stored_again() -> bool:
        key = {"Idempotency-Key": secrets.token_hex(4)}  # a fresh key each time: none is left claimed
        status, headers, _ = await post(http, gw, "/tasks", {"task": "t", "priority": 1}, **key)
        return status == 200 and headers["X-Checkpoint"] == "stored"

    await eventually(stored_again, what="a checkpoint stored after Redis came back", within=20)


@pytest.mark.parametrize(("answer", "expected"), [(VALID, 200), ({"result": 7}, 502)])
async def test_an_answer_that_arrives_after_the_store_died_is_relayed_not_lost(
    answer: dict[str, Any], expected: int, redis_server: RedisServer, make_gateway: Any, make_upstream: Any,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    """The claim was made; the store dies while the agent works; completing (or releasing) the claim fails."""
    release = asyncio.Event()

    async def slow_agent(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(answer)

    upstream = await make_upstream(slow_agent)
    gw = await make_gateway(redis_gateway_config(upstream, redis_server))
    await register(gw, contract())  # default policy: on_store_error refuse
    call = asyncio.create_task(post(http, gw, "/tasks", {"task": "t", "priority": 1}, **{"Idempotency-Key": "k"}))
    await eventually(lambda: len(upstream.seen) == 1, what="the agent has the call", within=20)
    redis_server.kill()
    release.set()
    status, headers, document = await call
    assert status == expected
    if expected == 200:
        assert document == VALID
        assert headers["X-Checkpoint"] == "bypass"
        assert gw.state.store.failures["complete_checkpoint"] == 1
    else:  # the agent's invalid answer is refused as always; the failed release is left to the lease
        assert document["type"].endswith("/response_invalid")
        assert gw.state.store.failures["release_checkpoint"] == 1


async def test_claims_are_leases_renewed_while_the_call_runs(
    tmp_path: Any, make_gateway: Any, make_upstream: Any, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def slow_agent(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(VALID)

    upstream = await make_upstream(slow_agent)
    config = gateway_config([{"name": "agent", "upstream": upstream.url}], store={"path": str(tmp_path / "s.db")})
    gw = await make_gateway(config)
    await register(gw, contract(), policy=agent_policy(checkpoint={"lease_seconds": 0.3}))
    body = {"task": "t", "priority": 1}
    call = asyncio.create_task(post(http, gw, "/tasks", body, **{"Idempotency-Key": "k"}))
    await eventually(lambda: len(upstream.seen) == 1, what="the agent has the call", within=20)
    key, digest = "agent POST /tasks key:k", hashlib.sha256(upstream.seen[0].body).hexdigest()
    first = await gw.state.store.claim_checkpoint(key, digest, now=time.time(), ttl=60)
    assert first is not None
    assert first.expires_at < time.time() + 1  # a lease, not the checkpoint's 24 h

    async def outlived_first_lease() -> bool:
        held = await gw.state.store.claim_checkpoint(key, digest, now=time.time(), ttl=60)
        assert held is not None, "the claim lapsed while its call was still running"
        return time.time() > first.expires_at and bool(held.expires_at > first.expires_at)

    await eventually(outlived_first_lease, what="the lease renewed past its first expiry", within=20)
    status, _, document = await post(http, gw, "/tasks", body, **{"Idempotency-Key": "k"})
    assert (status, document["type"].rsplit("/", 1)[1]) == (409, "request-in-flight")
    release.set()
    status, headers, _ = await call
    assert (status, headers["X-Checkpoint"]) == (200, "stored")
    done = await gw.state.store.claim_checkpoint(key, digest, now=time.time(), ttl=60)
    assert done is not None
    assert done.state == "done"
    assert done.expires_at > time.time() + 3600  # the stored answer gets the full TTL


SERVE = """
import asyncio, json, sys
from gateway.app import start_gateway
from gateway.config import GatewayConfig

async def serve() -> None:
    gateway = await start_gateway(GatewayConfig.model_validate(json.loads(sys.argv[1])))
    print(gateway.data_port, flush=True)
    await asyncio.Event().wait()

asyncio.run(serve())
"""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_gateway_killed_mid_call_frees_the_key_once_the_lease_expires(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, make_gateway: Any, make_upstream: Any,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    stuck = asyncio.Event()

    async def agent(request: web.Request) -> web.Response:
        if len(upstream.seen) == 1:  # the first call never ends: its gateway is killed meanwhile
            await stuck.wait()
        return web.json_response(VALID)

    upstream = await make_upstream(agent)
    for name, document in (("contracts", contract()), ("policies", agent_policy(checkpoint={"lease_seconds": 0.5}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "doc.json").write_text(json.dumps(document))
    store: dict[str, Any] = {"path": str(tmp_path / "gw.db")}
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = {"backend": "redis", "url": server.url, "prefix": f"t-{secrets.token_hex(4)}:"}
    raw = {
        "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
        "store": store, "routes": [{"name": "agent", "upstream": upstream.url}],
        "contract_dirs": [str(tmp_path / "contracts")], "policy_dirs": [str(tmp_path / "policies")],
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE, json.dumps(raw), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        port = int(await process.stdout.readline())
        body, key = {"task": "t", "priority": 1}, {"Idempotency-Key": "k"}
        doomed = asyncio.create_task(http.post(f"http://127.0.0.1:{port}/agent/tasks", json=body, headers=key))
        await eventually(lambda: len(upstream.seen) == 1, what="the agent has the first call", within=20)
        process.kill()  # SIGKILL: no clean-up, the claim stays in the store
        await process.wait()
        with pytest.raises(aiohttp.ClientError):
            await doomed

        restarted = await make_gateway(GatewayConfig.model_validate(raw))  # the same store, in this process
        answers: list[int] = []

        async def served() -> bool:
            status, headers, document = await post(http, restarted, "/tasks", body, **key)
            answers.append(status)
            return status == 200 and headers["X-Checkpoint"] == "stored" and document == VALID

        await eventually(served, what="the key served again after the dead gateway's lease expired", within=20)
        assert set(answers[:-1]) <= {409}  # request-in-flight only while the lease lasted
        assert len(upstream.seen) == 2
    finally:
        stuck.set()
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- stale context -----------------------------------------------------------------------------------------


def _context_contracts() -> tuple[dict[str, Any], dict[str, Any]]:
    producer = contract(id="agent.draft", operation={"method": "POST", "path": "/draft"}, request={},
                        responses={"200": {"type": "object"}},
                        context={"produces": {"artifact": "draft", "version": "/version"}})  # fmt: skip
    consumer = contract(request={"body": {"type": "object"}}, responses={},
                        context={"consumes": {"artifact": "draft", "version": "/version"}})  # fmt: skip
    return producer, consumer


@pytest.mark.parametrize("on_store_error", [None, "bypass"])
async def test_stale_context_lookups_when_the_store_is_down(
    on_store_error: str | None, redis_server: RedisServer, make_gateway: Any, upstream: Upstream,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    upstream.handler = replying(b'{"version": 2}')
    gw = await make_gateway(redis_gateway_config(upstream, redis_server))
    policy = agent_policy(context={"on_store_error": on_store_error}) if on_store_error else None
    await register(gw, *_context_contracts(), policy=policy)
    assert (await post(http, gw, "/draft", {}, **{"X-Run-Id": "r"}))[0] == 200
    redis_server.kill()

    status, headers, document = await post(http, gw, "/draft", {}, **{"X-Run-Id": "r"})
    assert status == 200  # the producer's answer is relayed although its version could not be recorded
    assert document == {"version": 2}
    status, headers, document = await post(http, gw, "/tasks", {"version": 1}, **{"X-Run-Id": "r"})
    if on_store_error is None:  # the default refuses: nothing is passed on as checked when it was not
        assert_store_problem(status, headers, document)
        assert document["operation"] == "artifact_versions"
    else:
        assert status == 200
        assert "context=unchecked" in headers["X-Contract-Verdict"]
    assert gw.state.store.failures["add_artifact_version"] == 1


# -- audit -------------------------------------------------------------------------------------------------


async def test_audit_records_made_during_a_redis_outage_reach_the_store_once_it_is_back(
    redis_server: RedisServer, make_gateway: Any, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    queue_size = 64
    audit = {"flush_interval": 0.02, "queue_size": queue_size}
    gw = await make_gateway(redis_gateway_config(upstream, redis_server, audit=audit))
    store = gw.state.store

    async def outage(run: str, handoffs: int) -> None:
        await gw.state.audit.flush()
        redis_server.kill()
        for n in range(handoffs):
            async with http.post(f"{gw.data_url}/agent/x", json={}, headers={"X-Run-Id": run, "X-Step": str(n)}):
                pass
        # A write that fails after the last handoff has every record in memory, within the bound, and none in
        # flight: a write still retrying when Redis comes back could otherwise succeed with more than the bound.
        failed = store.failures["append_handoffs"]
        await eventually(
            lambda: store.failures["append_handoffs"] > failed, what="a write failed after the handoffs", within=20
        )
        redis_server.start()

    async def recorded(run: str, expected: int) -> list[str]:
        async def complete() -> bool:
            try:
                return len(await store.run_handoffs(run)) == expected
            except StoreUnavailable:
                return False

        await eventually(complete, what=f"{expected} records of {run} in the store", within=20)
        return [r.step for r in await store.run_handoffs(run)]

    await outage("within-queue", 40)
    assert await recorded("within-queue", 40) == [str(n) for n in range(40)]
    assert dropped(gw) == 0

    await outage("beyond-queue", 100)  # more than the queue holds: the oldest 36 are real drops
    assert await recorded("beyond-queue", queue_size) == [str(n) for n in range(100 - queue_size, 100)]
    assert dropped(gw) == 100 - queue_size


def dropped(gw: RunningGateway) -> float:
    for line in gw.state.metrics.exposition().decode().splitlines():
        if line.startswith("agent_gateway_audit_dropped_total "):
            return float(line.split()[1])
    raise AssertionError("no agent_gateway_audit_dropped_total")


# -- every backend: driver errors become StoreUnavailable ----------------------------------------------------


async def test_driver_errors_become_store_unavailable_and_are_counted(tmp_path: Any) -> None:
    sqlite = SQLiteStore(str(tmp_path / "s.db"))
    await sqlite.close()
    with pytest.raises(StoreUnavailable) as refused:
        await sqlite.list_routes()
    assert (refused.value.status_code(), refused.value.operation) == (503, "list_routes")
    assert sqlite.failures["list_routes"] == 1

    redis = RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # a port nobody listens on
    try:
        with pytest.raises(StoreUnavailable):
            await redis.claim_checkpoint("k", "d", now=time.time(), ttl=1)
        assert redis.failures["claim_checkpoint"] == 1
    finally:
        await redis.close()
