"""The recovery stage: a :class:`Failure` raised below becomes an escalation (202 or 503, kept in a real
in-memory store), a fallback (static, or another route through the in-memory upstream; checked against the
contract either way), or a rejection (the agent's own answer when one was kept, else the problem)."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict

from gateway.config import AuditSettings, Limits, RouteSpec
from gateway.contracts.document import Action
from gateway.control.routes import RouteRegistry
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed, BufferedResponse, Failure
from gateway.dataplane.recover import EscalationUnavailable, Recover
from gateway.errors import Escalated, FallbackInvalid, UpstreamError, UpstreamPayloadTooLarge
from gateway.outcomes import Verdict
from gateway.policies.document import PolicySpec
from gateway.policies.escalation import OUTCOME_PATH, Escalations
from gateway.redaction import redactor_for
from gateway.store.sqlite import SQLiteStore
from gateway.testing import MemoryUpstream, Scripted
from tests.dataplane.conftest import VALID, compiled, exchange, policy

BACKUP = RouteSpec(name="backup", upstream="http://backup.invalid")
LIMIT = 1024
ERROR = UpstreamError("agent", "Upstream 'agent' answered 503.")
ANSWER = Scripted(200, VALID)
KEPT = BufferedResponse(503, "Busy", CIMultiDict({"Retry-After": "7"}), b'{"busy": true}')


def failing(action: Action, *, kept: BufferedResponse | None = None, attempts: int = 3) -> Failure:
    return Failure(AttemptFailed(Verdict.UPSTREAM_ERROR, ERROR, response=kept), action, attempts)


async def build(store: SQLiteStore, answer: Scripted = ANSWER) -> tuple[Recover, MemoryUpstream]:
    """The stage, with a ``backup`` route that answers ``answer``."""
    routes = RouteRegistry(store)
    await routes.put(BACKUP)
    upstream = MemoryUpstream(lambda *_: answer)
    stage = Recover(Escalations(store), routes, upstream, redactor_for(AuditSettings()), Limits(max_body_bytes=LIMIT))
    return stage, upstream


async def run(stage: Recover, done: Exchange, failure: Failure) -> web.StreamResponse:
    """Run the stage over a stage that fails with ``failure``."""

    async def below(_: Exchange) -> web.StreamResponse:
        raise failure

    return await stage(done, below)


async def recover(
    store: SQLiteStore, done: Exchange, failure: Failure, answer: Scripted = ANSWER
) -> tuple[web.StreamResponse, MemoryUpstream]:
    stage, upstream = await build(store, answer)
    return await run(stage, done, failure), upstream


def fallback(**response: object) -> PolicySpec:
    return policy(fallback={"response": {"status": 200, **response}} if response else {"route": "backup"})


async def test_static_fallback(store: SQLiteStore) -> None:
    done = exchange(contract=compiled(), policy=fallback(body={"result": "cached"}))
    response, upstream = await recover(store, done, failing("fallback"))
    assert (response.status, orjson.loads(response.body)) == (200, {"result": "cached"})  # type: ignore[attr-defined]
    assert (done.fallback, done.status, done.notes) == ("static", 200, ["fallback=static"])
    assert upstream.calls == []


async def test_static_fallback_that_breaks_the_contract_is_refused(store: SQLiteStore) -> None:
    done = exchange(contract=compiled(), policy=fallback(body={"wrong": 1}))
    with pytest.raises(FallbackInvalid):
        await recover(store, done, failing("fallback"))
    assert done.fallback is None


async def test_route_fallback_goes_through_the_upstream(store: SQLiteStore) -> None:
    done = exchange(contract=compiled(), policy=fallback())
    response, upstream = await recover(store, done, failing("fallback"))
    assert (response.status, response.body) == (200, VALID)  # type: ignore[attr-defined]
    assert done.fallback == "route:backup"
    assert [(call.route, call.body, call.budget) for call in upstream.calls] == [("backup", done.request_body, None)]


async def test_route_fallback_that_breaks_the_contract_is_refused(store: SQLiteStore) -> None:
    done = exchange(contract=compiled(), policy=fallback())
    with pytest.raises(FallbackInvalid):
        await recover(store, done, failing("fallback"), Scripted(200, b'{"result": 1}'))


async def test_route_fallback_answer_over_max_body_bytes_is_refused(store: SQLiteStore) -> None:
    done = exchange(policy=fallback())
    with pytest.raises(UpstreamPayloadTooLarge):
        await recover(store, done, failing("fallback"), Scripted(200, (b"x" * LIMIT, b"x")))


async def test_fallback_to_a_route_that_is_gone_rejects(store: SQLiteStore) -> None:
    done = exchange(policy=policy(fallback={"route": "deleted"}))
    with pytest.raises(UpstreamError) as raised:
        await recover(store, done, failing("fallback"))
    assert raised.value is ERROR


async def test_fallback_without_a_fallback_in_the_policy_rejects(store: SQLiteStore) -> None:
    with pytest.raises(UpstreamError):
        await recover(store, exchange(), failing("fallback"))


async def test_reject_relays_the_kept_answer(store: SQLiteStore) -> None:
    response, _ = await recover(store, exchange(), failing("reject", kept=KEPT))
    assert (response.status, response.reason, response.body) == (503, "Busy", b'{"busy": true}')  # type: ignore[attr-defined]
    assert response.headers["Retry-After"] == "7"


async def test_reject_without_a_kept_answer_raises_the_error(store: SQLiteStore) -> None:
    with pytest.raises(UpstreamError) as raised:
        await recover(store, exchange(), failing("reject"))
    assert raised.value is ERROR


async def test_escalation_answered_202(store: SQLiteStore) -> None:
    done = exchange(contract=compiled(), policy=policy(escalation={"respond_status": 202}))
    done.run_id, done.response_body = "run-1", b'{"busy": true}'
    response, _ = await recover(store, done, failing("escalate", kept=KEPT))
    document = orjson.loads(response.body)  # type: ignore[attr-defined]
    assert response.status == 202
    assert response.headers["Location"] == document["outcome_url"] == OUTCOME_PATH + document["escalation_id"]
    assert (document["status"], document["reason"]) == ("pending", "upstream_error")
    item = await store.get_escalation(document["escalation_id"])
    assert item is not None
    assert (item.route, item.attempts, item.upstream_status, item.run_id) == ("agent", 3, 503, "run-1")
    assert (item.request_body, item.upstream_body) == (done.request_body, b'{"busy": true}')
    assert done.notes == [f"escalation={item.id}"]


async def test_escalation_answered_503(store: SQLiteStore) -> None:
    done = exchange(policy=policy(escalation={"respond_status": 503}))
    with pytest.raises(Escalated) as raised:
        await recover(store, done, failing("escalate"))
    assert await store.get_escalation(raised.value.escalation_id) is not None
    assert raised.value.__cause__ is ERROR


async def test_escalation_the_store_cannot_keep_is_503_to_retry(store: SQLiteStore) -> None:
    stage, _ = await build(store)
    await store.close()  # a real store failing: every write raises
    done = exchange(policy=policy(escalation={"respond_status": 202}))
    with pytest.raises(EscalationUnavailable) as raised:
        await run(stage, done, failing("escalate"))
    assert raised.value.headers()["Retry-After"] == "5"
