"""A live gateway with the demo's agents, on an event loop in a thread of its own, for synchronous browser tests;
and a headless Debian Chromium driven by selenium.

The gateway holds what the console must show: a broken run (``demo-2``: the planner drops a required field), a
run whose invalid draft travelled on under a shadow-mode contract (``demo-6``: an entry point and the handoff
that consumed it), a run whose agent name and payload hold markup (``markup``), and a pending DLQ item
(``demo-esc``: the critic scores on the wrong scale and the critic's policy escalates) whose pipeline can be
resumed with :meth:`LiveGateway.resume`.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from gateway.admin.client import AdminClient
from gateway.app import RunningGateway, start_gateway
from gateway.demo.agents import AGENTS
from gateway.demo.harness import Demo, load_documents, start_agents
from gateway.demo.scenarios import SCENARIOS, pipeline_run, shadow_run
from tests.conftest import PATIENCE, TOKEN, gateway_config

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1500,1000")  # fmt: skip
TRACE_URL = "http://traces.example/trace/{trace_id}"
ESCALATED_RUN = "demo-esc"
MARKUP_RUN = "markup"
MARKUP = "<img src=x onerror=window.pwned=1>"
"""Attacker-controlled text in an agent name and a payload: the console must show it, never run it."""
T = TypeVar("T")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    return f"{' and '.join(absent)} not installed (apt-get install chromium chromium-driver)" if absent else None


def start_browser(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*HEADLESS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@dataclass
class _Parts:
    gateway: RunningGateway
    admin: AdminClient
    session: aiohttp.ClientSession
    demo: Demo
    stop_agents: Any
    draft: Any = None


class LiveGateway:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-gateway", daemon=True)
        self._thread.start()
        self._parts = self.run(self._start())
        self.admin_url = str(self._parts.gateway.admin_url)
        self.escalation_id = self.run(self._escalate())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the gateway's loop and wait for its result (bounded: a hang fails the test)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=3 * PATIENCE)

    async def _start(self) -> _Parts:
        hits: Counter[str] = Counter()
        urls, stop_agents = await start_agents(AGENTS, hits)
        config = gateway_config([], audit={"payloads": True}, admin={"trace_url": TRACE_URL})
        gateway = await start_gateway(config)
        admin = AdminClient(str(gateway.admin_url), TOKEN)
        await admin.__aenter__()
        for name, url in urls.items():
            await admin.put_route(name, {"upstream": url})
        await admin.request("POST", "/contracts", body={"contracts": load_documents(REPO / "contracts")})
        critic = [p for p in load_documents(REPO / "policies") if p["id"] == "critic-policy"]
        await admin.request("POST", "/policies", body={"policies": critic})
        session = aiohttp.ClientSession()
        demo = Demo(gateway.data_url, {name: path for name, (path, _) in AGENTS.items()}, hits, io.StringIO())
        await pipeline_run(demo, session, 2, SCENARIOS[1])
        await shadow_run(admin, demo, session, 6)
        await demo.handoff(session, MARKUP_RUN, 1, MARKUP, "researcher", {"topic": MARKUP})
        return _Parts(gateway, admin, session, demo, stop_agents)

    async def _escalate(self) -> str:
        """The escalation demo's first pass: the critic's answer is escalated; returns the DLQ item's id."""
        demo, session = self._parts.demo, self._parts.session
        research = await demo.step(
            session, ESCALATED_RUN, 1, "orchestrator", "researcher", {"topic": "agent contracts"}
        )
        plan = await demo.step(session, ESCALATED_RUN, 2, "researcher", "planner", research[1])
        draft = await demo.step(session, ESCALATED_RUN, 3, "planner", "writer", plan[1])
        self._parts.draft = draft[1]
        review = await demo.step(session, ESCALATED_RUN, 4, "writer", "critic", draft[1], fault="bad-score")
        return str(review[0].document["escalation_id"])

    async def _resume(self) -> tuple[int, str]:
        demo, session = self._parts.demo, self._parts.session
        record, _ = await demo.step(session, ESCALATED_RUN, 4, "writer", "critic", self._parts.draft, fault="bad-score")
        return record.status, record.detail

    async def active_version(self, contract_id: str) -> int:
        return int((await self._parts.admin.request("GET", f"/contracts/{contract_id}"))["version"])

    def resume(self) -> tuple[int, str]:
        """The pipeline re-sends the escalated step, as the demo's re-run does: ``(status, report detail)``."""
        return self.run(self._resume())

    async def _close(self) -> None:
        await self._parts.session.close()
        await self._parts.admin.__aexit__(None, None, None)
        await self._parts.gateway.close()
        await self._parts.stop_agents()

    def close(self) -> None:
        self.run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=PATIENCE)
        self._loop.close()


def fresh_profile() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="console-chromium-")
