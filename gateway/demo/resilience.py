"""The demo's resilience runs: a retry that repairs malformed output, a breaker on a dead agent, and an
escalation resolved by a person after which the pipeline resumes from its checkpoints."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.admin.client import AdminClient

if TYPE_CHECKING:
    from gateway.demo.pipeline import Demo, Handoff


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def resilience_runs(
    admin: AdminClient, demo: Demo, session: aiohttp.ClientSession, policies: list[dict[str, Any]], first: int
) -> list[list[Handoff]]:
    await admin.put_route("translator", {"upstream": f"http://127.0.0.1:{_dead_port()}"})
    registered = await admin.request("POST", "/policies", body={"policies": policies})
    names = ", ".join(f"{r['id']} v{r['version']}" for r in registered["registered"])
    print(f"\n[admin] policies registered: {names}; route translator points at an agent that is down", file=demo.out)
    return [
        await _retry_run(demo, session, first),
        await _breaker_run(demo, session, first + 1),
        await _escalation_run(admin, demo, session, first + 2),
    ]


async def _retry_run(demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    run_id = f"demo-{number}"
    research = await demo.step(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"})
    plan = await demo.step(session, run_id, 2, "researcher", "planner", research[1])
    draft = await demo.step(session, run_id, 3, "planner", "writer", plan[1], fault=f"flaky:{run_id}")
    review = await demo.step(session, run_id, 4, "writer", "critic", draft[1])
    handoffs = [research[0], plan[0], draft[0], review[0]]
    demo.print_run(number, "writer emits truncated JSON once; the gateway asks again", handoffs,
                   "completed: the malformed draft never left the gateway, the retry's valid one did")  # fmt: skip
    return handoffs


async def _breaker_run(demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    from gateway.demo.pipeline import Handoff

    handoffs = []
    timings = []
    for step in range(1, 4):
        started = time.perf_counter()
        headers = {"X-Run-Id": f"demo-{number}", "X-Agent-Name": "writer"}
        async with session.post(f"{demo.gateway.data_url}/translator/translate", json={}, headers=headers) as resp:
            problem = await resp.json(content_type=None)
        timings.append((time.perf_counter() - started) * 1000)
        kind = problem["type"].rsplit("/", 1)[1]
        detail = f"{kind} in {timings[-1]:.1f} ms" + (f", breaker {problem['breaker']}" if "breaker" in problem else "")
        handoffs.append(Handoff(step, "writer", "translator", resp.status, kind, detail, False))
    demo.print_run(number, "translator is down: the circuit breaker opens and fails fast", handoffs,
                   "2 failures in a row opened the breaker; the third call never touched the network")  # fmt: skip
    return handoffs


async def _escalation_run(admin: AdminClient, demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    run_id = f"demo-{number}"
    research = await demo.step(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"})
    plan = await demo.step(session, run_id, 2, "researcher", "planner", research[1])
    draft = await demo.step(session, run_id, 3, "planner", "writer", plan[1])
    review = await demo.step(session, run_id, 4, "writer", "critic", draft[1], fault="bad-score")
    handoffs = [research[0], plan[0], draft[0], review[0]]
    demo.print_run(number, "critic scores on the wrong scale: escalated to a person", handoffs,
                   "paused: the review waits in the dead-letter queue")  # fmt: skip
    item_id = review[0].detail.split("escalated: ")[1].split()[0]
    item = await admin.request("GET", f"/dlq/{item_id}")
    first = item["violations"][0]
    print(f"[admin] GET /dlq/{item_id}: {item['reason']} from {item['route']} under {item['contract']} "
          f"v{item['contract_version']}: {first['pointer']} {first['message']}", file=demo.out)  # fmt: skip
    try:
        await admin.request("POST", f"/dlq/{item_id}/resolve", body={"body": {"verdict": "approve", "score": 1.7}})
    except Exception as exc:
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
