"""The demo's cast: four toy agents — researcher → planner → writer → critic — that can be told to misbehave.

They know nothing about the gateway (:mod:`gateway.demo.harness` serves each as a plain aiohttp service). The
``X-Demo-Fault`` request header makes one return the kind of output real model-backed agents produce on a bad day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

FAULT_HEADER = "X-Demo-Fault"
Agent = Callable[[dict[str, Any], str], Any]
"""``(request JSON, fault) -> answer``: a JSON value, ``bytes`` sent as-is as JSON, or ``str`` sent as text."""


def researcher(payload: dict[str, Any], fault: str) -> Any:
    topic = payload["topic"]
    findings = [
        {"claim": f"{topic} pipelines fail mostly at handoffs", "source": "https://arxiv.org/abs/2503.13657"},
        {"claim": "explicit contracts catch malformed outputs early", "source": "https://example.org/contracts"},
    ]
    return {"topic": topic, "findings": findings}


def planner(payload: dict[str, Any], fault: str) -> Any:
    steps = [{"title": f"Explain {f['claim']}", "detail": f"cite {f['source']}"} for f in payload["findings"]]
    if fault == "missing-field":
        steps = [{"title": s["title"]} for s in steps]
    return {"topic": payload["topic"], "steps": steps}


_flaky_calls: Counter[str] = Counter()


def writer(payload: dict[str, Any], fault: str) -> Any:
    body = " ".join(step["title"] + "." for step in payload["steps"])
    draft: dict[str, Any] = {"version": payload.get("revision", 1), "title": payload["topic"].title(), "body": body}
    if fault == "wrong-type":
        draft["version"] = "one"
    if fault.startswith("flaky:"):  # malformed JSON on the first call of each run, as models sometimes do
        _flaky_calls[fault] += 1
        if _flaky_calls[fault] == 1:
            return b'{"draft": {"version": 1, "title": "Multi'
    return {"draft": draft}


def critic(payload: dict[str, Any], fault: str) -> Any:
    if fault == "not-json":
        return "LGTM! Ship it."
    if fault == "bad-score":
        return {"verdict": "approve", "score": 17, "comments": ["score on the wrong scale"]}
    return {"verdict": "approve", "score": 0.82, "comments": ["clear", "cites sources"]}


#: Each agent's path and behaviour, in pipeline order.
AGENTS: dict[str, tuple[str, Agent]] = {
    "researcher": ("/research", researcher),
    "planner": ("/plan", planner),
    "writer": ("/draft", writer),
    "critic": ("/review", critic),
}
