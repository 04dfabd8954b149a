"""Pure parts of observability: timelines, taxonomy, JSON pointers, stale-context rules, the terminal view."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.contracts.context import ContextTracker, canonical_digest
from gateway.contracts.document import ArtifactRef
from gateway.jsonpointer import MISSING, redact, resolve
from gateway.observability.audit import timeline
from gateway.outcomes import classify
from gateway.report import render_timeline
from gateway.store.base import HandoffRecord
from gateway.store.sqlite import SQLiteStore


def record(n: int, source: str, target: str, verdict: str = "valid", **extra: Any) -> HandoffRecord:
    return HandoffRecord(
        id=f"h{n}", run_id="r", step="s", attempt=1, source=source, target=target, method="POST", path="/",
        status=200, verdict=verdict, trace_id="t", started_at=float(n), duration_ms=1.0, **extra,
    )  # fmt: skip


def test_entry_point_is_the_first_faulty_handoff_and_taint_follows_agents_and_bytes() -> None:
    records = [
        record(4, "critic", "publisher"),
        record(1, "orchestrator", "writer"),
        record(2, "planner", "writer", "response_invalid", response_sha256="bad"),
        record(3, "writer", "critic"),
        record(5, "orchestrator", "archiver", request_sha256="bad"),
        record(6, "orchestrator", "mailer"),
    ]
    story = timeline("r", records)
    assert [r.id for r in story.handoffs] == ["h1", "h2", "h3", "h4", "h5", "h6"]
    assert story.entry_point is not None
    assert story.entry_point.id == "h2"
    assert [r.id for r in story.downstream] == ["h3", "h4", "h5"]


def test_request_violation_taints_the_sender() -> None:
    story = timeline("r", [record(1, "a", "b", "request_invalid"), record(2, "a", "c"), record(3, "b", "d")])
    assert [r.id for r in story.downstream] == ["h2"]


def test_clean_run_has_no_entry_point() -> None:
    story = timeline("r", [record(1, "a", "b")])
    assert story.entry_point is None
    assert story.downstream == []


@pytest.mark.parametrize(
    ("verdict", "keywords", "expected"),
    [
        ("request_invalid", ["type"], ("specification", "disobey_task_specification")),
        ("response_invalid", ["required"], ("inter-agent misalignment", "information_withholding")),
        ("response_invalid", ["required", "type"], ("specification", "disobey_task_specification")),
        ("response_invalid", ["contentType"], ("specification", "disobey_task_specification")),
        ("stale_context", ["staleContext"], ("inter-agent misalignment", "ignored_other_agents_input")),
        ("upstream_timeout", [], ("infrastructure", "upstream_timeout")),
        ("upstream_error", [], ("infrastructure", "upstream_error")),
        ("breaker_open", [], ("infrastructure", "circuit_open")),
        ("valid", [], None),
        ("unchecked", [], None),
    ],
)
def test_taxonomy(verdict: str, keywords: list[str], expected: tuple[str, str] | None) -> None:
    assert classify(verdict, [{"keyword": k} for k in keywords]) == expected


def test_json_pointers() -> None:
    doc = {"a": [{"b~c": 1, "d/e": 2}], "": 3}
    assert resolve(doc, "/a/0/b~0c") == 1
    assert resolve(doc, "/a/0/d~1e") == 2
    assert resolve(doc, "/") == 3
    assert resolve(doc, "/a/5") is MISSING
    assert resolve(doc, "") is doc
    redacted = redact(doc, ("/a/0/d~1e", "/missing/x"))
    assert redacted == {"a": [{"b~c": 1, "d/e": "[redacted]"}], "": 3}
    assert doc["a"][0]["d/e"] == 2  # the original is untouched


async def test_stale_context_by_header_and_by_embedded_digest() -> None:
    store = SQLiteStore(":memory:")
    tracker = ContextTracker(store)
    try:
        by_header = ArtifactRef("plan", header="X-Context-Version")
        await tracker.record("r", by_header, None, {"X-Context-Version": "3"})
        assert await tracker.check("r", by_header, None, {"X-Context-Version": "3"}) is None
        stale = await tracker.check("r", by_header, None, {"X-Context-Version": "2"})
        assert stale is not None
        assert stale.pointer == "/headers/x-context-version"
        assert await tracker.check("other-run", by_header, None, {"X-Context-Version": "1"}) is None

        embedded = ArtifactRef("draft", embed="/draft")
        v1, v2 = {"draft": {"text": "one", "n": 1}}, {"draft": {"n": 2, "text": "two"}}
        await tracker.record("r", embedded, v1, {})
        await tracker.record("r", embedded, v2, {})
        assert await tracker.check("r", embedded, {"draft": {"text": "two", "n": 2}}, {}) is None  # key order
        old = await tracker.check("r", embedded, {"draft": {"n": 1, "text": "one"}}, {})
        assert old is not None
        assert old.message == "embeds draft #1 of 2 produced in run r; a newer one exists"
        assert await tracker.check("r", embedded, {"draft": {"text": "unknown"}}, {}) is None
        assert canonical_digest({"a": 1, "b": 2}) == canonical_digest({"b": 2, "a": 1})
    finally:
        await store.close()


def test_terminal_timeline_marks_entry_point_and_downstream() -> None:
    handoffs = [
        {"id": "h1", "source": "a", "target": "b", "step": "POST /x", "status": 200, "verdict": "valid",
         "duration_ms": 1.0, "started_at": 10.0, "violations": [], "contract": "b.x", "contract_version": 2},
        {"id": "h2", "source": "b", "target": "c", "step": "POST /y", "status": 502, "verdict": "response_invalid",
         "duration_ms": 2.0, "started_at": 10.5, "violation_count": 3, "category": "specification",
         "failure_mode": "disobey_task_specification", "contract": None,
         "violations": [{"pointer": "/n", "keyword": "type", "message": "bad"}]},
    ]  # fmt: skip
    text = render_timeline({"run_id": "r", "handoffs": handoffs, "entry_point": handoffs[1], "downstream": []})
    lines = text.splitlines()
    assert lines[1] == "  violation entered at #2: b → c (response_invalid; specification: disobey_task_specification)"
    assert lines[3].startswith("    1       0.0  a → b")
    assert lines[3].endswith("[b.x v2]")
    assert lines[4].startswith("  ▶ 2     500.0  b → c")
    assert lines[4].endswith("/n type: bad (+2 more)")
