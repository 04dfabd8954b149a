"""The demo's runs, in the order they are shown: contract refusals, a shadow-mode rollout, a stale review, then
the resilience policies (a retry that repairs malformed output, a breaker on a dead agent, an escalation
resolved by a person after which the pipeline resumes from its checkpoints).

Each run is a script over :class:`gateway.demo.harness.Demo`; the gateway does the rest.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.demo.agents import AGENTS
from gateway.demo.harness import Demo, Handoff
from gateway.report import render_timeline

PIPELINE = tuple(AGENTS)
TIMELINE_RUN = 6
"""The run whose timeline is printed: the shadow-mode run, where an invalid draft travelled on."""


@dataclass(frozen=True)
class Scenario:
    title: str
    topic: str = "multi-agent reliability"
    faults: dict[str, str] = field(default_factory=dict)
    shadow: bool = False
    """The run expects a shadow-mode contract to let an invalid payload through (with a verdict header)."""


SCENARIOS = (
    Scenario("healthy pipeline"),
    Scenario("planner drops a required field", faults={"planner": "missing-field"}),
    Scenario("writer returns the wrong type", faults={"writer": "wrong-type"}),
    Scenario("critic answers in prose, not JSON", faults={"critic": "not-json"}),
    Scenario("orchestrator sends a malformed task", topic=""),
)
SHADOW = Scenario("writer returns the wrong type, its contract in shadow mode", faults={"writer": "wrong-type"},
                  shadow=True)  # fmt: skip


async def play(admin: AdminClient, demo: Demo, session: aiohttp.ClientSession,
               policies: list[dict[str, Any]]) -> list[list[Handoff]]:  # fmt: skip
    """Every run, in order; returns each run's handoffs."""
    runs = [await pipeline_run(demo, session, n, scenario) for n, scenario in enumerate(SCENARIOS, start=1)]
    runs.append(await shadow_run(admin, demo, session, len(runs) + 1))
    print(f"\nWhere did run demo-{TIMELINE_RUN} break? (agent-gateway runs show demo-{TIMELINE_RUN})", file=demo.out)
    print(render_timeline(await admin.request("GET", f"/runs/demo-{TIMELINE_RUN}")), file=demo.out)
    runs.append(await stale_run(demo, session, len(runs) + 1))
    await admin.put_route("translator", {"upstream": f"http://127.0.0.1:{_dead_port()}"})
    registered = await admin.request("POST", "/policies", body={"policies": policies})
    names = ", ".join(f"{r['id']} v{r['version']}" for r in registered["registered"])
    print(f"\n[admin] policies registered: {names}; route translator points at an agent that is down", file=demo.out)
    runs.append(await retry_run(demo, session, len(runs) + 1))
    runs.append(await breaker_run(demo, session, len(runs) + 1))
    runs.append(await escalation_run(admin, demo, session, len(runs) + 1))
    return runs


# -- contracts -------------------------------------------------------------------------------------------


async def pipeline_run(demo: Demo, session: aiohttp.ClientSession, number: int, scenario: Scenario) -> list[Handoff]:
    handoffs, last = await demo.chain(session, f"demo-{number}", PIPELINE, {"topic": scenario.topic},
                                      scenario.faults, shadow=scenario.shadow)  # fmt: skip
    final = handoffs[-1]
    if final.status == 200 and final.target == PIPELINE[-1]:
        outcome = f"completed: critic says {last.get('verdict')!r} (score {last.get('score')})"
    else:
        nxt = PIPELINE.index(final.target) + 1
        downstream = f"; nothing reached {PIPELINE[nxt]}" if nxt < len(PIPELINE) else ""
        outcome = f"halted at {final.target} (HTTP {final.status}){downstream}"
    demo.print_run(number, scenario.title, handoffs, outcome)
    return handoffs


async def shadow_run(admin: AdminClient, demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    """Roll out a shadow-mode version of the writer's contract, watch it pass a bad draft, then roll back."""
    current = await admin.request("GET", "/contracts/writer.draft")
    staged = await admin.request("PUT", "/contracts/writer.draft", body={**current["document"], "mode": "shadow"})
    print(f"\n[admin] registered writer.draft v{staged['version']} in shadow mode (recorded, not enforced)",
          file=demo.out)  # fmt: skip
    run = await pipeline_run(demo, session, number, SHADOW)
    await admin.request("POST", "/contracts/writer.draft/activate", body={"version": current["version"]})
    print(f"[admin] rolled writer.draft back to v{current['version']} (enforce)", file=demo.out)
    return run


async def stale_run(demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    """The critic approves draft v1, the writer revises it to v2, then the critic is handed v1 again."""
    run_id = f"demo-{number}"
    research = await demo.handoff(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"})
    plan = await demo.handoff(session, run_id, 2, "researcher", "planner", research[1])
    draft_v1 = await demo.handoff(session, run_id, 3, "planner", "writer", plan[1])
    review_v1 = await demo.handoff(session, run_id, 4, "writer", "critic", draft_v1[1])
    draft_v2 = await demo.handoff(session, run_id, 5, "critic", "writer", {**plan[1], "revision": 2})
    stale = await demo.handoff(session, run_id, 6, "writer", "critic", draft_v1[1])
    handoffs = [research[0], plan[0], draft_v1[0], review_v1[0], draft_v2[0], stale[0]]
    demo.print_run(number, "critic reviews draft v1 after the writer produced v2", handoffs,
                   "the stale review was refused; the critic must see draft v2")  # fmt: skip
    return handoffs


# -- resilience policies ---------------------------------------------------------------------------------


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def retry_run(demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    run_id = f"demo-{number}"
    research = await demo.step(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"})
    plan = await demo.step(session, run_id, 2, "researcher", "planner", research[1])
    draft = await demo.step(session, run_id, 3, "planner", "writer", plan[1], fault=f"flaky:{run_id}")
    review = await demo.step(session, run_id, 4, "writer", "critic", draft[1])
    handoffs = [research[0], plan[0], draft[0], review[0]]
    demo.print_run(number, "writer emits truncated JSON once; the gateway asks again", handoffs,
                   "completed: the malformed draft never left the gateway, the retry's valid one did")  # fmt: skip
    return handoffs


async def breaker_run(demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    """Three calls to a dead translator: two fail, the breaker opens, the third fails fast."""
    handoffs = []
    for step in range(1, 4):
        record, _ = await demo.handoff(session, f"demo-{number}", step, "writer", "translator", {}, path="/translate")
        problem = record.document if isinstance(record.document, dict) else {}
        breaker = f", breaker {problem['breaker']}" if "breaker" in problem else ""
        handoffs.append(replace(record, detail=f"in {record.elapsed_ms:.1f} ms{breaker}"))
    demo.print_run(number, "translator is down: the circuit breaker opens and fails fast", handoffs,
                   "2 failures in a row opened the breaker; the third call never touched the network")  # fmt: skip
    return handoffs


async def escalation_run(admin: AdminClient, demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    run_id = f"demo-{number}"
    research = await demo.step(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"})
    plan = await demo.step(session, run_id, 2, "researcher", "planner", research[1])
    draft = await demo.step(session, run_id, 3, "planner", "writer", plan[1])
    review = await demo.step(session, run_id, 4, "writer", "critic", draft[1], fault="bad-score")
    handoffs = [research[0], plan[0], draft[0], review[0]]
    demo.print_run(number, "critic scores on the wrong scale: escalated to a person", handoffs,
                   "paused: the review waits in the dead-letter queue")  # fmt: skip
    item_id = review[0].document["escalation_id"]
    item = await admin.request("GET", f"/dlq/{item_id}")
    first = item["violations"][0]
    print(f"[admin] GET /dlq/{item_id}: {item['reason']} from {item['route']} under {item['contract']} "
          f"v{item['contract_version']}: {first['pointer']} {first['message']}", file=demo.out)  # fmt: skip
    try:
        await admin.request("POST", f"/dlq/{item_id}/resolve", body={"body": {"verdict": "approve", "score": 1.7}})
    except AdminAPIError as exc:
        print(f"[admin] a correction with score 1.7 is refused: {exc}", file=demo.out)
    fixed = {"verdict": "approve", "score": 0.85, "comments": ["rescaled by a reviewer"]}
    await admin.request("POST", f"/dlq/{item_id}/resolve", body={"body": fixed, "note": "rescaled to 0..1"})
    print(f"[admin] POST /dlq/{item_id}/resolve with score 0.85: resolved", file=demo.out)

    before = sum(demo.hits.values())
    resumed = [
        await demo.step(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"}),
        await demo.step(session, run_id, 2, "researcher", "planner", research[1]),
        await demo.step(session, run_id, 3, "planner", "writer", plan[1]),
        await demo.step(session, run_id, 4, "writer", "critic", draft[1], fault="bad-score"),
    ]
    called = sum(demo.hits.values()) - before
    demo.print_run(number, "the pipeline re-runs and resumes from its checkpoints", [h for h, _ in resumed],
                   f"completed with the reviewer's answer (score {resumed[-1][1]['score']}); "
                   f"agents called on the re-run: {called}")  # fmt: skip
    return handoffs + [h for h, _ in resumed]
