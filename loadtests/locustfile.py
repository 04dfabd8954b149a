"""Locust scenario: agents posting handoffs through a running gateway, a share of them malformed.

    agent-gateway demo-ready gateway (see README), then:
    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8080

The contract ``bench.findings`` from ``loadtests/bench.py`` must be registered on route ``agent``; the task mix
sends 90% valid and 10% invalid documents and checks that every invalid one gets a 422 problem document.
Keep runs on loopback and bounded (``-t``), as everywhere in this repository.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from locust import HttpUser, between, task

sys.path.insert(0, str(Path(__file__).parent))
from bench import payload

VALID = payload(1024)
INVALID = json.dumps({"run": 7, "findings": [{"claim": "", "score": 3}]}).encode()
HEADERS = {"Content-Type": "application/json", "X-Agent-Name": "locust"}


class Agent(HttpUser):
    wait_time = between(0.0, 0.01)

    @task(9)
    def valid_handoff(self) -> None:
        with self.client.post("/agent/findings", data=VALID, headers=HEADERS, catch_response=True) as resp:
            if resp.status_code != 200 or not resp.headers.get("X-Contract-Verdict", "").startswith("valid"):
                resp.failure(f"valid handoff refused: {resp.status_code}")

    @task(1)
    def invalid_handoff(self) -> None:
        with self.client.post(
            "/agent/findings", data=INVALID, headers=HEADERS, catch_response=True, name="/agent/findings [invalid]"
        ) as resp:
            problem = resp.json() if resp.status_code == 422 else {}
            if problem.get("direction") != "request" or not problem.get("violations"):
                resp.failure(f"invalid handoff not refused with a problem document: {resp.status_code}")
            else:
                resp.success()
