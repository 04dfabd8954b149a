"""The demo's cast: four toy agents — researcher → planner → writer → critic — that can be told to misbehave.

They know nothing about the gateway (:mod:`gateway.demo.harness` serves each as a plain aiohttp service). The
``X-Demo-Fault`` request header makes one return the kind of output real model-backed agents produce on a bad day.
"""

from __future__ import annotations

import functools
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


NON_ASCII_TOPIC = "non-ascii-topic"
"""The bug :func:`planted` can put in the writer: a topic with a non-ASCII character loses the draft's title."""
SHORT_BODY = "(an outline without detail yet)"
"""Pads a draft whose steps say too little: the contract wants a body of at least 20 characters."""


def _step_text(step: Any) -> str:
    title = step.get("title") if isinstance(step, dict) else None
    return title if isinstance(title, str) else str(step)


def writer(payload: dict[str, Any], fault: str, bug: str = "") -> Any:
    """Any request its contract accepts gets a draft its contract accepts (the fuzzer holds it to that), unless
    a fault is asked for or a bug is planted."""
    body = " ".join(_step_text(step) + "." for step in payload["steps"])
    title = payload["topic"].title() or "Untitled"
    draft: dict[str, Any] = {"version": payload.get("revision", 1), "title": title, "body": body}
    if len(body) < 20:
        draft["body"] = f"{body} {SHORT_BODY}".strip()
    if bug == NON_ASCII_TOPIC and not payload["topic"].isascii():
        del draft["title"]  # as an ASCII-only title template that fails quietly would
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


def planted(bug: str) -> Agent:
    """The writer with ``bug`` planted (:data:`BUGS`): it breaks its contract only for that class of input, to
    show ``agent-gateway contracts fuzz`` finding it; the demo itself never plants one."""
    if bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}: choose from {', '.join(BUGS)}")
    return functools.partial(writer, bug=bug)


BUGS = (NON_ASCII_TOPIC,)

#: Each agent's path and behaviour, in pipeline order.
AGENTS: dict[str, tuple[str, Agent]] = {
    "researcher": ("/research", researcher),
    "planner": ("/plan", planner),
    "writer": ("/draft", writer),
    "critic": ("/review", critic),
}
