"""Every fault of ``gateway.testing`` thrown at a real gateway, with the outcome the README documents for it.

The gateway comes from the ``agent_gateway`` fixture of the shipped pytest plugin (entry point ``pytest11``), the
agents are ``FaultyAgent`` servers on loopback: exactly what a user's pipeline test gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.outcomes import Verdict
from gateway.testing import Fault, FaultyAgent, GatewayFactory, Reply

Start = GatewayFactory

DRAFT = {"draft": {"title": "Ship v1", "version": 2}}
WRITER = {
    "id": "writer.draft",
    "route": "writer",
    "operation": {"method": "POST", "path": "/draft"},
    "request": {"body": {"type": "object", "required": ["plan"]}},
    "responses": {
        "200": {
            "type": "object",
            "required": ["draft"],
            "properties": {
                "draft": {
                    "type": "object",
                    "required": ["title", "version"],
                    "properties": {"title": {"type": "string"}, "version": {"type": "integer"}},
                    "additionalProperties": False,
                }
            },
        }
    },
    "context": {"produces": {"artifact": "draft", "version": "/draft/version"}},
}
CRITIC = {
    "id": "critic.review",
    "route": "critic",
    "operation": {"method": "POST", "path": "/review"},
    "request": {"body": WRITER["responses"]["200"]},  # type: ignore[index]
    "responses": {"200": {"type": "object", "required": ["score"]}},
    "context": {"consumes": {"artifact": "draft", "version": "/draft/version"}},
}
PLAN = {"plan": ["outline", "write"]}


def timeouts(attempt: float) -> dict[str, Any]:
    return {"id": "writer-timeouts", "attach": {"route": "writer"}, "timeouts": {"attempt": attempt}}


def retries(**retry: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02, **retry}
    return {"id": "writer-retries", "attach": {"route": "writer"}, "retry": policy}


async def draft_through(agent_gateway: Start, fault: Fault, **options: Any) -> tuple[Reply, FaultyAgent]:
    """One call to the writer through a gateway, the writer answering with ``fault``."""
    async with FaultyAgent(answer=DRAFT, schedule=[fault]) as writer:
        gw = await agent_gateway({"writer": writer}, contracts=[WRITER], **options)
        reply = await gw.post("writer", "/draft", json=PLAN, headers={"X-Run-Id": "r1"})
    return reply, writer


def keywords(reply: Reply) -> set[str]:
    return {violation["keyword"] for violation in reply.json["violations"]}


@pytest.mark.parametrize(
    ("fault", "keyword"),
    [
        pytest.param(Fault.truncated_json(), "json", id="truncated-json"),
        pytest.param(Fault.wrong_type("/draft/version"), "type", id="wrong-type"),
        pytest.param(Fault.missing("/draft/title"), "required", id="missing-member"),
        pytest.param(Fault.extra("/draft/notes"), "additionalProperties", id="extra-member"),
        pytest.param(Fault.content_type("text/plain"), "contentType", id="wrong-content-type"),
        pytest.param(Fault.invalid_utf8(), "json", id="invalid-utf8"),
    ],
)
async def test_a_broken_answer_is_refused_with_502_response_invalid(
    agent_gateway: Start, fault: Fault, keyword: str
) -> None:
    reply, writer = await draft_through(agent_gateway, fault)
    assert (reply.status, reply.problem_type, reply.verdict) == (502, Verdict.RESPONSE_INVALID, "response_invalid")
    assert keyword in keywords(reply)
    assert writer.calls == 1


async def test_an_extra_member_passes_where_the_schema_leaves_the_object_open(agent_gateway: Start) -> None:
    reply, _ = await draft_through(agent_gateway, Fault.extra("/notes"))
    assert (reply.status, reply.verdict) == (200, "valid")
    assert reply.json["notes"] == "unexpected"


async def test_a_connection_dropped_mid_body_is_502_upstream_error(agent_gateway: Start) -> None:
    reply, _ = await draft_through(agent_gateway, Fault.drop_mid_body())
    assert (reply.status, reply.problem_type) == (502, Verdict.UPSTREAM_ERROR)


async def test_a_huge_answer_past_the_body_limit_is_502(agent_gateway: Start) -> None:
    reply, _ = await draft_through(agent_gateway, Fault.huge(200_000), settings={"limits": {"max_body_bytes": 100_000}})
    assert (reply.status, reply.problem_type) == (502, "upstream-payload-too-large")


async def test_a_hung_agent_is_504_when_the_policys_attempt_timeout_runs_out(agent_gateway: Start) -> None:
    reply, writer = await draft_through(agent_gateway, Fault.hang(), policies=[timeouts(0.2)])
    assert (reply.status, reply.problem_type) == (504, Verdict.UPSTREAM_TIMEOUT)
    assert writer.calls == 1


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param(Fault.delay(0.01), 200, id="delay-within-timeout"),
        pytest.param(Fault.delay(30), 504, id="delay-past-timeout"),
        pytest.param(Fault.slow_drip(chunk=8, interval=0.001), 200, id="drip-within-timeout"),
        pytest.param(Fault.slow_drip(chunk=1, interval=1), 504, id="drip-past-timeout"),
    ],
)
async def test_slow_answers_are_valid_within_the_attempt_timeout_and_504_past_it(
    agent_gateway: Start, fault: Fault, status: int
) -> None:
    reply, _ = await draft_through(agent_gateway, fault, policies=[timeouts(0.5)])
    assert reply.status == status
    if status == 200:
        assert (reply.json, reply.verdict) == (DRAFT, "valid")
    else:
        assert reply.problem_type == Verdict.UPSTREAM_TIMEOUT


async def test_a_5xx_without_a_policy_is_relayed_as_the_agents_answer(agent_gateway: Start) -> None:
    reply, _ = await draft_through(agent_gateway, Fault.status(500, body={"error": "boom"}))
    assert (reply.status, reply.json) == (500, {"error": "boom"})  # no schema covers 500: relayed unchecked


async def test_a_503_is_retried_no_sooner_than_its_retry_after(agent_gateway: Start) -> None:
    async with FaultyAgent(answer=DRAFT, schedule=[Fault.status(503, retry_after=1)]) as writer:
        gw = await agent_gateway({"writer": writer}, contracts=[WRITER], policies=[retries()])
        reply = await gw.post("writer", "/draft", json=PLAN, headers={"Idempotency-Key": "k1"})
    assert (reply.status, reply.verdict, reply.json) == (200, "valid", DRAFT)
    first, second = writer.received
    assert second.at - first.at >= 1.0  # Retry-After is a floor on the wait, never a hint the gateway ignores


async def test_a_503_every_time_exhausts_the_retries_and_relays_the_agents_answer(agent_gateway: Start) -> None:
    always = Fault.status(503)
    async with FaultyAgent(answer=DRAFT, schedule=lambda call: always) as writer:
        gw = await agent_gateway({"writer": writer}, contracts=[WRITER], policies=[retries(max_attempts=2)])
        reply = await gw.post("writer", "/draft", json=PLAN, headers={"Idempotency-Key": "k2"})
    assert (reply.status, reply.json) == (503, {"error": "injected 503"})
    assert reply.headers["X-Gateway-Attempts"] == "2"
    assert writer.calls == 2


async def test_a_stale_artifact_passes_and_the_handoff_consuming_it_is_409(agent_gateway: Start) -> None:
    async with (
        FaultyAgent(answer=DRAFT, schedule=[None, Fault.stale_context("/draft/version")]) as writer,
        FaultyAgent(answer={"score": 0.9}) as critic,
    ):
        gw = await agent_gateway({"writer": writer, "critic": critic}, contracts=[WRITER, CRITIC])
        run = {"X-Run-Id": "stale-run"}
        fresh = await gw.post("writer", "/draft", json=PLAN, headers=run)
        stale = await gw.post("writer", "/draft", json=PLAN, headers=run)
        review = await gw.post("critic", "/review", json=stale.json, headers=run)
    assert fresh.json["draft"]["version"] == 2
    assert (stale.status, stale.verdict, stale.json["draft"]["version"]) == (200, "valid", 1)
    assert (review.status, review.problem_type) == (409, Verdict.STALE_CONTEXT)
    assert critic.calls == 0
    timeline = await gw.run("stale-run")
    assert [h["verdict"] for h in timeline["handoffs"]] == ["valid", "valid", "stale_context"]


async def test_with_an_escalate_policy_a_broken_answer_goes_to_the_dead_letter_queue(
    agent_gateway: Start, faulty_agent: Callable[..., Awaitable[FaultyAgent]]
) -> None:
    writer = await faulty_agent(answer=DRAFT, schedule=[Fault.missing("/draft/title")])
    escalate = {
        "id": "writer-escalate",
        "attach": {"route": "writer"},
        "failure_modes": {"response_invalid": "escalate"},
        "escalation": {"respond_status": 202},
    }
    gw = await agent_gateway({"writer": writer}, contracts=[WRITER], policies=[escalate])
    reply = await gw.post("writer", "/draft", json=PLAN, headers={"X-Run-Id": "r-esc"})
    assert reply.status == 202
    (item,) = await gw.dlq()
    assert (item["id"], item["reason"]) == (reply.json["escalation_id"], Verdict.RESPONSE_INVALID)
