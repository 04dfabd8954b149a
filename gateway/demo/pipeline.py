"""``agent-gateway demo``: four agents behind one gateway, some misbehaving, and a report of each handoff.

Everything runs in this process on loopback: the agents, the gateway with its admin API, and the
orchestrator that passes each agent's output to the next one *through the gateway*, as a real pipeline would.
"""

from __future__ import annotations

import secrets
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway, start_gateway
from gateway.config import GatewayConfig
from gateway.contracts.document import load_document_file
from gateway.demo.agents import AGENTS, FAULT_HEADER, start_agents
from gateway.demo.resilience import resilience_runs
from gateway.report import render_timeline
from gateway.verdicts import VERDICT_HEADER

PIPELINE = ("researcher", "planner", "writer", "critic")


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


@dataclass
class Handoff:
    step: int
    source: str
    target: str
    status: int
    verdict: str
    detail: str
    agent_called: bool


def _first_violation(body: bytes) -> str:
    try:
        problem = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    violations = problem.get("violations") or []
    if not violations:
        return str(problem.get("detail", ""))
    first = violations[0]
    more = problem.get("violation_count", 1) - 1
    return f"{first['pointer'] or '/'} {first['keyword']}: {first['message']}" + (f" (+{more} more)" if more else "")


class Demo:
    def __init__(self, gateway: RunningGateway, hits: Counter[str], out: TextIO) -> None:
        self.gateway = gateway
        self.hits = hits
        self.out = out
        self.passed_invalid = 0

    async def handoff(
        self, session: aiohttp.ClientSession, run_id: str, step: int, source: str, target: str, payload: Any,
        *, fault: str = "", shadow: bool = False, key: str | None = None,
    ) -> tuple[Handoff, Any]:  # fmt: skip
        """One call from ``source`` to ``target`` through the gateway; returns what the report needs and the
        parsed answer (``None`` when the gateway refused)."""
        path = AGENTS[target][0]
        headers = {"X-Run-Id": run_id, "X-Agent-Name": source, FAULT_HEADER: fault}
        if key is not None:
            headers["Idempotency-Key"] = key
        before = self.hits[target]
        async with session.post(f"{self.gateway.data_url}/{target}{path}", json=payload, headers=headers) as resp:
            body = await resp.read()
            verdict, _, notes = resp.headers.get(VERDICT_HEADER, "-").partition(";")
            detail = _first_violation(body) if resp.status >= 300 else notes.strip() if verdict != "valid" else ""
            if "attempts=" in notes:
                detail = notes[notes.index("attempts=") :].split(";")[0]
            if resp.status == 202:
                detail = f"escalated: {orjson.loads(body)['escalation_id']}"
            if "X-Checkpoint" in resp.headers:
                detail = (detail + f" checkpoint {resp.headers['X-Checkpoint']}").strip()
            if resp.status == 200 and verdict not in ("valid", "-") and not shadow:
                self.passed_invalid += 1
            record = Handoff(step, source, target, resp.status, verdict, detail, self.hits[target] > before)
            return record, orjson.loads(body) if resp.status == 200 else None

    async def step(self, session: aiohttp.ClientSession, run_id: str, number: int, source: str, target: str,
                   payload: Any, **kwargs: Any) -> tuple[Handoff, Any]:  # fmt: skip
        """A handoff whose step has an idempotency key, so it can be checkpointed and resumed."""
        return await self.handoff(session, run_id, number, source, target, payload, key=f"{run_id}:{number}", **kwargs)

    async def run(self, session: aiohttp.ClientSession, number: int, scenario: Scenario) -> list[Handoff]:
        """Drive one pipeline run; stop at the first handoff the gateway refuses, as a pipeline must."""
        payload: Any = {"topic": scenario.topic}
        handoffs: list[Handoff] = []
        source = "orchestrator"
        for step, target in enumerate(PIPELINE, start=1):
            fault = scenario.faults.get(target, "")
            record, answer = await self.handoff(
                session, f"demo-{number}", step, source, target, payload, fault=fault, shadow=scenario.shadow
            )
            handoffs.append(record)
            if answer is None:
                break
            payload, source = answer, target
        self.print_run(number, scenario.title, handoffs, self._outcome(handoffs, payload))
        return handoffs

    async def stale_run(self, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
        """The critic approves draft v1, the writer revises it to v2, then the critic is handed v1 again."""
        run_id = f"demo-{number}"
        research = await self.handoff(session, run_id, 1, "orchestrator", "researcher", {"topic": "agent contracts"})
        plan = await self.handoff(session, run_id, 2, "researcher", "planner", research[1])
        draft_v1 = await self.handoff(session, run_id, 3, "planner", "writer", plan[1])
        review_v1 = await self.handoff(session, run_id, 4, "writer", "critic", draft_v1[1])
        draft_v2 = await self.handoff(session, run_id, 5, "critic", "writer", {**plan[1], "revision": 2})
        stale = await self.handoff(session, run_id, 6, "writer", "critic", draft_v1[1])
        handoffs = [research[0], plan[0], draft_v1[0], review_v1[0], draft_v2[0], stale[0]]
        title = "critic reviews draft v1 after the writer produced v2"
        self.print_run(number, title, handoffs, "the stale review was refused; the critic must see draft v2")
        return handoffs

    @staticmethod
    def _outcome(handoffs: list[Handoff], last: Any) -> str:
        final = handoffs[-1]
        if final.status == 200 and final.target == PIPELINE[-1]:
            return f"completed: critic says {last.get('verdict')!r} (score {last.get('score')})"
        nxt = PIPELINE.index(final.target) + 1
        downstream = f"; nothing reached {PIPELINE[nxt]}" if nxt < len(PIPELINE) else ""
        return f"halted at {final.target} (HTTP {final.status}){downstream}"

    def print_run(self, number: int, title: str, handoffs: list[Handoff], outcome: str) -> None:
        print(f"\nRun {number}: {title}  (X-Run-Id: demo-{number})", file=self.out)
        print(f"  {'#':<2} {'handoff':<26} {'HTTP':<5} {'verdict':<17} detail", file=self.out)
        for h in handoffs:
            called = "" if h.agent_called else " [agent never called]"
            line = f"  {h.step:<2} {h.source + ' → ' + h.target:<26} {h.status:<5} {h.verdict:<17} {h.detail}{called}"
            print(line.rstrip(), file=self.out)
        print(f"  outcome: {outcome}", file=self.out)


def demo_config(token: str) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0, "token": token},
            "store": {"path": ":memory:"},
        }
    )


def load_contract_documents(directory: Path) -> list[dict[str, Any]]:
    """The demo's YAML documents; an empty or missing directory is an error, not an empty demo."""
    documents = [load_document_file(p) for p in sorted(directory.glob("*.y*ml"))]
    if not documents:
        raise FileNotFoundError(f"no demo documents in {directory}: run from a checkout or pass --contracts/--policies")
    return documents


async def run_demo(contracts_dir: Path, policies_dir: Path, out: TextIO = sys.stdout) -> int:
    documents = load_contract_documents(contracts_dir)
    policies = load_contract_documents(policies_dir)
    hits: Counter[str] = Counter()
    urls, stop_agents = await start_agents(hits)
    token = secrets.token_urlsafe(16)
    gateway = await start_gateway(demo_config(token))
    try:
        async with AdminClient(gateway.admin_url, token) as admin, aiohttp.ClientSession() as session:
            for name, url in urls.items():
                await admin.put_route(name, {"upstream": url})
            registered = await admin.request("POST", "/contracts", body={"contracts": documents})
            print(
                "agent-gateway demo: researcher → planner → writer → critic, every handoff through the gateway",
                file=out,
            )
            print(f"  data plane {gateway.data_url}   admin API {gateway.admin_url}", file=out)
            versions = ", ".join(f"{r['id']} v{r['version']}" for r in registered["registered"])
            print(f"  contracts registered through the admin API: {versions}", file=out)
            demo = Demo(gateway, hits, out)
            runs = [await demo.run(session, n, scenario) for n, scenario in enumerate(SCENARIOS, start=1)]
            runs.append(await _shadow_run(admin, demo, session, len(runs) + 1))
            print("\nWhere did run demo-6 break? (agent-gateway runs show demo-6)", file=out)
            print(render_timeline(await admin.request("GET", "/runs/demo-6")), file=out)
            runs.append(await demo.stale_run(session, len(runs) + 1))
            runs += await resilience_runs(admin, demo, session, policies, len(runs) + 1)
        handoffs = [h for run in runs for h in run]
        rejected = sum(
            1 for h in handoffs if h.status in (409, 422, 502) and h.verdict.endswith(("invalid", "context"))
        )
        print(
            f"\nSummary: {len(runs)} runs, {len(handoffs)} handoffs, {rejected} refused by contract, "
            f"invalid payloads passed on as valid in enforce mode: {demo.passed_invalid}",
            file=out,
        )
        return 0 if demo.passed_invalid == 0 else 1
    finally:
        await gateway.close()
        await stop_agents()


async def _shadow_run(admin: AdminClient, demo: Demo, session: aiohttp.ClientSession, number: int) -> list[Handoff]:
    """Roll out a shadow-mode version of the writer's contract, watch it pass a bad draft, then roll back."""
    current = await admin.request("GET", "/contracts/writer.draft")
    shadow = {**current["document"], "mode": "shadow"}
    staged = await admin.request("PUT", "/contracts/writer.draft", body=shadow)
    print(
        f"\n[admin] registered writer.draft v{staged['version']} in shadow mode (recorded, not enforced)",
        file=demo.out,
    )
    run = await demo.run(
        session,
        number,
        Scenario(
            "writer returns the wrong type, its contract in shadow mode", faults={"writer": "wrong-type"}, shadow=True
        ),
    )
    await admin.request("POST", "/contracts/writer.draft/activate", body={"version": current["version"]})
    print(f"[admin] rolled writer.draft back to v{current['version']} (enforce)", file=demo.out)
    return run
