"""The demo's machinery, apart from what it shows: serving agents on loopback, a gateway configured for the demo,
driving handoffs through it, and printing each run as a table.

Nothing here knows which agents misbehave or how; :mod:`gateway.demo.agents` and :mod:`gateway.demo.scenarios`
say that. The report's "verdict" column is the ``X-Contract-Verdict`` header's verdict, a value of
:class:`gateway.outcomes.Verdict` (``-`` when the gateway sent none), never a problem type.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
from aiohttp import web

from gateway import headers
from gateway.config import GatewayConfig
from gateway.contracts.document import load_document_file
from gateway.demo.agents import FAULT_HEADER, Agent
from gateway.outcomes import FAULTY

NO_VERDICT = "-"


@dataclass(frozen=True, slots=True)
class Handoff:
    """One line of the report: a call from ``source`` to ``target`` and what the gateway made of it."""

    step: int
    source: str
    target: str
    status: int
    verdict: str
    detail: str
    agent_called: bool
    elapsed_ms: float = 0.0
    document: Any = None
    """The parsed JSON answer (the agent's output, or the gateway's problem document); ``None`` if not JSON."""


def _first_violation(document: Any) -> str:
    if not isinstance(document, dict):
        return ""
    violations = document.get("violations") or []
    if not violations:
        return str(document.get("detail", ""))
    first = violations[0]
    more = document.get("violation_count", 1) - 1
    return f"{first['pointer'] or '/'} {first['keyword']}: {first['message']}" + (f" (+{more} more)" if more else "")


def _detail(status: int, verdict: str, notes: str, document: Any, response_headers: Mapping[str, str]) -> str:
    """What the report says next to the verdict: the first violation of a refusal, the header's notes otherwise."""
    detail = _first_violation(document) if status >= 300 else notes if verdict != "valid" else ""
    if "attempts=" in notes:
        detail = notes[notes.index("attempts=") :].split(";")[0]
    if status == 202 and isinstance(document, dict):
        detail = f"escalated: {document.get('escalation_id')}"
    if headers.CHECKPOINT in response_headers:
        detail = f"{detail} checkpoint {response_headers[headers.CHECKPOINT]}".strip()
    return detail


class Demo:
    """Drives handoffs through one gateway and prints runs; counts invalid payloads passed on as valid."""

    def __init__(self, data_url: str, paths: Mapping[str, str], hits: Counter[str], out: TextIO) -> None:
        self.data_url = data_url
        self.paths = paths
        self.hits = hits
        self.out = out
        self.passed_invalid = 0

    async def handoff(
        self, session: aiohttp.ClientSession, run_id: str, step: int, source: str, target: str, payload: Any,
        *, fault: str = "", shadow: bool = False, key: str | None = None, path: str | None = None,
    ) -> tuple[Handoff, Any]:  # fmt: skip
        """One call from ``source`` to ``target`` through the gateway; returns the report's line and the parsed
        answer (``None`` unless the answer is a 200 the pipeline can pass on)."""
        sent = {headers.RUN: run_id, headers.AGENT: source, FAULT_HEADER: fault}
        if key is not None:
            sent[headers.IDEMPOTENCY_KEY] = key
        url = f"{self.data_url}/{target}{path or self.paths[target]}"
        before = self.hits[target]
        started = time.perf_counter()
        async with session.post(url, json=payload, headers=sent) as resp:
            body = await resp.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        verdict, _, notes = resp.headers.get(headers.VERDICT, NO_VERDICT).partition(";")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        if resp.status == 200 and verdict in FAULTY and not shadow:
            self.passed_invalid += 1
        detail = _detail(resp.status, verdict, notes.strip(), document, resp.headers)
        record = Handoff(step, source, target, resp.status, verdict, detail, self.hits[target] > before,
                         elapsed_ms, document)  # fmt: skip
        return record, document if resp.status == 200 else None

    async def step(self, session: aiohttp.ClientSession, run_id: str, number: int, source: str, target: str,
                   payload: Any, **kwargs: Any) -> tuple[Handoff, Any]:  # fmt: skip
        """A handoff whose step has an idempotency key, so it can be checkpointed and resumed."""
        return await self.handoff(session, run_id, number, source, target, payload, key=f"{run_id}:{number}", **kwargs)

    async def chain(self, session: aiohttp.ClientSession, run_id: str, order: tuple[str, ...], payload: Any,
                    faults: Mapping[str, str], *, shadow: bool = False) -> tuple[list[Handoff], Any]:  # fmt: skip
        """Pass each agent's answer to the next; stop at the first handoff the gateway refuses, as a pipeline
        must. Returns the handoffs and the last answer passed on."""
        handoffs: list[Handoff] = []
        source = "orchestrator"
        for step, target in enumerate(order, start=1):
            record, answer = await self.handoff(
                session, run_id, step, source, target, payload, fault=faults.get(target, ""), shadow=shadow
            )
            handoffs.append(record)
            if answer is None:
                break
            payload, source = answer, target
        return handoffs, payload

    def print_run(self, number: int, title: str, handoffs: list[Handoff], outcome: str) -> None:
        print(f"\nRun {number}: {title}  (X-Run-Id: demo-{number})", file=self.out)
        print(f"  {'#':<2} {'handoff':<26} {'HTTP':<5} {'verdict':<17} detail", file=self.out)
        for h in handoffs:
            called = "" if h.agent_called else " [agent never called]"
            line = f"  {h.step:<2} {h.source + ' → ' + h.target:<26} {h.status:<5} {h.verdict:<17} {h.detail}{called}"
            print(line.rstrip(), file=self.out)
        print(f"  outcome: {outcome}", file=self.out)

    def print_summary(self, runs: list[list[Handoff]]) -> None:
        handoffs = [h for run in runs for h in run]
        refused = sum(1 for h in handoffs if h.status >= 400 and h.verdict in FAULTY)
        print(
            f"\nSummary: {len(runs)} runs, {len(handoffs)} handoffs, {refused} refused by contract, "
            f"invalid payloads passed on as valid in enforce mode: {self.passed_invalid}",
            file=self.out,
        )


def agent_app(name: str, path: str, agent: Agent, hits: Counter[str]) -> web.Application:
    """An aiohttp app serving one agent at ``path``; ``hits`` counts the requests it really received."""

    async def handle(request: web.Request) -> web.Response:
        hits[name] += 1
        result = agent(await request.json(), request.headers.get(FAULT_HEADER, ""))
        if isinstance(result, str):
            return web.Response(text=result, content_type="text/plain")
        if isinstance(result, bytes):
            return web.Response(body=result, content_type="application/json")
        return web.json_response(result)

    app = web.Application()
    app.router.add_post(path, handle)
    return app


async def start_agents(
    agents: Mapping[str, tuple[str, Agent]], hits: Counter[str]
) -> tuple[dict[str, str], Callable[[], Awaitable[None]]]:
    """Start every agent on an ephemeral loopback port; returns their base URLs and a stop function."""
    runners: list[web.AppRunner] = []
    urls: dict[str, str] = {}
    for name, (path, agent) in agents.items():
        runner = web.AppRunner(agent_app(name, path, agent, hits), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def stop() -> None:
        for runner in runners:
            await runner.cleanup()

    return urls, stop


def demo_config(token: str) -> GatewayConfig:
    """A gateway on ephemeral loopback ports with an in-memory store: the demo leaves nothing behind."""
    return GatewayConfig.model_validate(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0, "token": token},
            "store": {"path": ":memory:"},
        }
    )


def load_documents(directory: Path) -> list[dict[str, Any]]:
    """The demo's YAML documents; an empty or missing directory is an error, not an empty demo."""
    documents = [load_document_file(p) for p in sorted(directory.glob("*.y*ml"))]
    if not documents:
        raise FileNotFoundError(f"no demo documents in {directory}: run from a checkout or pass --contracts/--policies")
    return documents
