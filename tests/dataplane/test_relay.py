"""The relay stage on the in-memory upstream: what it relays, what it turns into a failed attempt, and the
body limit on both the checked and the streamed path (the streamed one writes to a mocked request's writer)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.config import AuditSettings, Limits
from gateway.contracts.context import ContextTracker
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.failures import AttemptFailed
from gateway.dataplane.relay import Relay
from gateway.errors import ContractViolation, UpstreamError, UpstreamPayloadTooLarge, UpstreamTimeout
from gateway.outcomes import Verdict
from gateway.redaction import redactor_for
from gateway.store.sqlite import SQLiteStore
from gateway.testing import MemoryUpstream, Scripted, Sent
from tests.dataplane.conftest import VALID, Wire, compiled, exchange, policy

LIMIT = 64


def relay(store: SQLiteStore, answer: Scripted | Exception) -> tuple[Relay, MemoryUpstream]:
    def handler(*_: object) -> Scripted:
        if isinstance(answer, Exception):
            raise answer
        return answer

    upstream = MemoryUpstream(handler)
    return Relay(
        upstream,
        ContextTracker(store),
        Limits(max_body_bytes=LIMIT),
        redactor_for(AuditSettings()),
        keep_payloads=False,
    ), upstream


async def test_valid_answer_is_relayed_as_its_original_bytes(store: SQLiteStore) -> None:
    stage, upstream = relay(store, Scripted(200, VALID, headers={"X-Agent": "a", "Connection": "close"}))
    done = exchange(contract=compiled())
    done.attempt_budget = 2.5
    response = await stage(done)
    assert (response.status, response.body) == (200, VALID)  # type: ignore[attr-defined]
    assert response.headers["X-Agent"] == "a"
    assert "Connection" not in response.headers
    assert response.headers["Via"] == "1.1 agent-gateway"
    assert (done.verdict, done.status, done.response_body) == (Verdict.VALID, 200, VALID)
    assert upstream.calls == [Sent("agent", done.request_body, 2.5)]


async def test_invalid_answer_is_a_failed_attempt(store: SQLiteStore) -> None:
    stage, _ = relay(store, Scripted(200, b'{"result": 7}'))
    done = exchange(contract=compiled())
    with pytest.raises(AttemptFailed) as raised:
        await stage(done)
    assert raised.value.condition is Verdict.RESPONSE_INVALID
    assert isinstance(raised.value.error, ContractViolation)
    assert raised.value.response is None
    assert done.verdict is Verdict.RESPONSE_INVALID
    assert [(v["direction"], v["pointer"]) for v in done.violations] == [("response", "/result")]


async def test_invalid_answer_passed_on_when_the_contract_says_so(store: SQLiteStore) -> None:
    stage, _ = relay(store, Scripted(200, b'{"result": 7}'))
    done = exchange(contract=compiled(failure_modes={"response_invalid": "pass"}))
    response = await stage(done)
    assert response.body == b'{"result": 7}'  # type: ignore[attr-defined]
    assert done.verdict is Verdict.RESPONSE_INVALID
    assert done.notes == ["response_violations=1"]


async def test_listed_5xx_acted_on_is_a_failed_attempt_that_keeps_the_answer(store: SQLiteStore) -> None:
    stage, _ = relay(store, Scripted(503, b'{"busy": true}', headers={"Retry-After": "7"}, reason="Busy"))
    done = exchange(contract=compiled(), policy=policy(retry={}))
    done.act_on_failed_status = True
    with pytest.raises(AttemptFailed) as raised:
        await stage(done)
    failed = raised.value
    assert (failed.condition, failed.retry_after) == (Verdict.UPSTREAM_ERROR, 7.0)
    assert failed.response is not None
    assert (failed.response.status, failed.response.reason, failed.response.body) == (503, "Busy", b'{"busy": true}')
    assert failed.response.headers["Retry-After"] == "7"
    assert done.response_body == b'{"busy": true}'


async def test_listed_5xx_not_acted_on_streams_back_as_it_is(store: SQLiteStore) -> None:
    stage, _ = relay(store, Scripted(503, (b'{"busy"', b": true}"), content_type="application/json"))
    wire = Wire()
    done = exchange(contract=compiled(), policy=policy(retry={}), wire=wire)
    response = await stage(done)
    assert response.status == 503
    assert wire.status_line.startswith("HTTP/1.1 503")
    assert (bytes(wire.sent), wire.ended, done.committed) == (b'{"busy": true}', True, True)


async def test_an_answer_without_a_schema_streams_chunk_by_chunk(store: SQLiteStore) -> None:
    stage, _ = relay(store, Scripted(200, (b"one ", b"two ", b"three"), content_type="text/plain"))
    wire = Wire()
    done = exchange(wire=wire)
    response = await stage(done)
    assert response.status == 200
    assert wire.chunks == [b"one ", b"two ", b"three"]
    assert wire.ended
    assert done.upstream_seconds is not None


@pytest.mark.parametrize(
    ("error", "condition"),
    [(UpstreamTimeout("agent", "slow"), Verdict.UPSTREAM_TIMEOUT),
     (UpstreamError("agent", "down"), Verdict.UPSTREAM_ERROR)],
    ids=["timeout", "error"],
)  # fmt: skip
async def test_transport_failures_are_failed_attempts(
    store: SQLiteStore, error: UpstreamError, condition: Verdict
) -> None:
    stage, _ = relay(store, error)
    done = exchange(contract=compiled())
    with pytest.raises(AttemptFailed) as raised:
        await stage(done)
    assert (raised.value.condition, raised.value.error) == (condition, error)
    assert done.upstream_seconds is not None


@pytest.mark.parametrize(
    ("body", "checked", "committed"),
    [(b"x" * (LIMIT + 1), True, False), ((b"x" * LIMIT, b"x"), True, False),
     (b"x" * (LIMIT + 1), False, False), ((b"x" * LIMIT, b"x"), False, True)],
    ids=["checked, with a length", "checked, chunked", "streamed, with a length", "streamed, chunked"],
)  # fmt: skip
async def test_an_answer_over_max_body_bytes(
    store: SQLiteStore, body: bytes | Sequence[bytes], checked: bool, committed: bool
) -> None:
    """Refused before anything is sent whenever the size is known in time; a chunked stream can only be cut."""
    stage, _ = relay(store, Scripted(200, body))
    done: Exchange = exchange(contract=compiled() if checked else None, wire=Wire())
    with pytest.raises(UpstreamPayloadTooLarge):
        await stage(done)
    assert done.committed is committed


async def test_a_valid_answer_records_the_artifact_it_produces(store: SQLiteStore) -> None:
    produces = {"produces": {"artifact": "draft", "version": "/version"}}
    stage, _ = relay(store, Scripted(200, b'{"result": "r", "version": 3}'))
    done = exchange(contract=compiled(context=produces))
    done.run_id = "run-1"
    await stage(done)
    assert [v.version for v in await store.artifact_versions("run-1", "draft")] == [3.0]
