from gateway.testing import Fault, FaultyAgent, GatewayFactory

WRITER_CONTRACT = {
    "id": "writer.draft",
    "route": "writer",
    "operation": {"method": "POST", "path": "/draft"},
    "responses": {"200": {"type": "object", "required": ["draft"]}},
}
RETRY_POLICY = {
    "id": "writer-policy",
    "attach": {"route": "writer"},
    "failure_modes": {"response_invalid": "retry"},  # malformed JSON from a model: ask again
    "retry": {"max_attempts": 3, "initial_backoff": 0.01},
}


async def test_pipeline_survives_a_writer_that_emits_truncated_json_once(agent_gateway: GatewayFactory) -> None:
    draft = {"draft": {"title": "Ship v1", "version": 1}}
    async with FaultyAgent(answer=draft, schedule=[Fault.truncated_json()]) as writer:
        gw = await agent_gateway({"writer": writer}, contracts=[WRITER_CONTRACT], policies=[RETRY_POLICY])
        reply = await gw.post(
            "writer",
            "/draft",
            json={"plan": ["outline"]},
            headers={"X-Run-Id": "run-1", "Idempotency-Key": "run-1:draft"},  # a keyed POST may be retried
        )
    assert (reply.status, reply.json, reply.verdict) == (200, draft, "valid")
    assert writer.calls == 2  # the truncated answer never reached the caller
    run = await gw.run("run-1")
    assert [h["verdict"] for h in run["handoffs"]] == ["response_invalid", "valid"]
