"""The pieces of ``runs replay`` that need no servers: which records are the handoffs, what a redacted request is
sent as, which runs can be replayed, and how verdict changes are ranked."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cli_replay import Outcome, final_attempts, replayable, without_redacted
from gateway.cli_support import CommandError


def record(**fields: Any) -> dict[str, Any]:
    base = {"trace_id": "t1", "started_at": 1.0, "step": "POST /draft", "attempt": 1, "target": "writer"}
    body = {"contract": "writer.draft", "verdict": "valid", "request_payload": {"plan": []}, "request_bytes": 12}
    return {**base, **body, **fields}


def test_retried_attempts_are_one_handoff_judged_by_its_last_attempt() -> None:
    records = [
        record(started_at=2.0, trace_id="t2", verdict="valid"),
        record(attempt=2, verdict="valid"),
        record(attempt=1, verdict="response_invalid"),
    ]
    assert [(r["trace_id"], r["attempt"]) for r in final_attempts(records)] == [("t1", 2), ("t2", 1)]


@pytest.mark.parametrize(
    ("payload", "sent", "removed"),
    [
        pytest.param({"a": 1, "key": "[redacted]"}, {"a": 1}, ("/key",), id="member"),
        pytest.param(
            {"users": [{"t": "[redacted]", "n": 1}, {"t": "[redacted]"}]},
            {"users": [{"n": 1}, {}]},
            ("/users/0/t", "/users/1/t"),
            id="members-of-array-items",
        ),
        pytest.param({"keys": ["[redacted]", "x", "[redacted]"]}, {"keys": ["x"]}, ("/keys/0", "/keys/2"), id="items"),
        pytest.param("[redacted]", None, ("",), id="whole-body"),
        pytest.param({"a": [1]}, {"a": [1]}, (), id="nothing-redacted"),
    ],
)
def test_redacted_values_are_removed_and_named(payload: Any, sent: Any, removed: tuple[str, ...]) -> None:
    assert without_redacted(payload) == (sent, removed)


def test_a_run_to_several_agents_needs_route() -> None:
    records = [record(), record(trace_id="t2", target="critic")]
    with pytest.raises(CommandError, match="has handoffs to critic, writer") as refused:
        replayable("r", records, None)
    assert refused.value.code == 2
    assert [r["target"] for r in replayable("r", records, "critic")] == ["critic"]


def test_payloads_are_required_only_where_the_agent_received_a_body() -> None:
    kept = [
        record(),
        record(verdict="request_invalid", request_payload=None),
        record(request_bytes=0, request_payload=None),
    ]
    assert len(replayable("r", kept, None)) == 3
    with pytest.raises(CommandError, match=r"#2 were not recorded"):
        replayable("r", [record(), record(request_payload=None)], None)


@pytest.mark.parametrize(
    ("old", "new", "change"),
    [("valid", "valid", "same"), ("valid", "unchecked", "worse"), ("unchecked", "upstream_error", "worse"),
     ("response_invalid", "upstream_timeout", "same"), ("upstream_error", "valid", "better"),
     ("request_invalid", None, "skipped")],
)  # fmt: skip
def test_changes_rank_valid_above_unchecked_above_any_failure(old: str, new: str | None, change: str) -> None:
    assert Outcome(1, "POST /draft", old, new).change == change
