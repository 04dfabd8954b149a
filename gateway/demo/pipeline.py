"""``agent-gateway demo``: four agents behind one gateway, some misbehaving, and a report of each handoff.

Everything runs in this process on loopback: the agents, the gateway with its admin API, and the
orchestrator that passes each agent's output to the next one *through the gateway*, as a real pipeline would.
This module only wires the parts together: :mod:`gateway.demo.harness` (serving, driving, printing),
:mod:`gateway.demo.agents` (who misbehaves, and how) and :mod:`gateway.demo.scenarios` (the runs' scripts).
"""

from __future__ import annotations

import secrets
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import aiohttp

from gateway.admin.client import AdminClient
from gateway.app import start_gateway
from gateway.demo.agents import AGENTS
from gateway.demo.harness import Demo, demo_config, load_documents, start_agents
from gateway.demo.scenarios import play


async def run_demo(contracts_dir: Path, policies_dir: Path, out: TextIO = sys.stdout) -> int:
    """Run every scenario and print the report; exit status 1 if an invalid payload was passed on as valid."""
    documents = load_documents(contracts_dir)
    policies = load_documents(policies_dir)
    hits: Counter[str] = Counter()
    urls, stop_agents = await start_agents(AGENTS, hits)
    token = secrets.token_urlsafe(16)
    gateway = await start_gateway(demo_config(token))
    try:
        async with AdminClient(gateway.admin_url, token) as admin, aiohttp.ClientSession() as session:
            for name, url in urls.items():
                await admin.put_route(name, {"upstream": url})
            registered = await admin.request("POST", "/contracts", body={"contracts": documents})
            print("agent-gateway demo: researcher → planner → writer → critic, every handoff through the gateway",
                  file=out)  # fmt: skip
            print(f"  data plane {gateway.data_url}   admin API {gateway.admin_url}", file=out)
            versions = ", ".join(f"{r['id']} v{r['version']}" for r in registered["registered"])
            print(f"  contracts registered through the admin API: {versions}", file=out)
            demo = Demo(gateway.data_url, {name: path for name, (path, _) in AGENTS.items()}, hits, out)
            runs = await play(admin, demo, session, policies)
        demo.print_summary(runs)
        return 0 if demo.passed_invalid == 0 else 1
    finally:
        await gateway.close()
        await stop_agents()
