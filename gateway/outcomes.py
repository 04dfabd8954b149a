"""One vocabulary for what happened to a handoff, spelled the same in headers, audit, metrics, problems and logs.

A **condition** is why an attempt or a request did not succeed; it is also the key a contract's or a policy's
``failure_modes`` uses to say what to do about it. A **verdict** is what the gateway concluded about the whole
handoff; every failing condition is its own verdict, so the two share one spelling. Each failing verdict has one
row in :data:`OUTCOMES`: the problem type a refusal carries (``…/problems/<verdict>``), its MAST category and
failure mode (see Cemri et al., 2025, "Why Do Multi-Agent LLM Systems Fail?").

===================  ==========================  ===========================================================
verdict              MAST category               failure mode (slug, as the metric label carries it)
===================  ==========================  ===========================================================
request_invalid      specification               disobey_task_specification
response_invalid     inter-agent misalignment    information_withholding (only ``required`` missing), else
                                                 disobey_task_specification
stale_context        inter-agent misalignment    ignored_other_agents_input
upstream_timeout     infrastructure (not MAST)   upstream_timeout
upstream_error       infrastructure (not MAST)   upstream_error
breaker_open         infrastructure (not MAST)   circuit_open
===================  ==========================  ===========================================================

A response missing required members is an agent *withholding* what the next one needs; any other schema break
is output that ignores the declared specification. MAST's task-verification category is what the contracts
themselves guard against, so no verdict is tagged with it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    VALID = "valid"
    """Checked against a contract and found valid (or answered from a checkpoint of a valid answer)."""
    UNCHECKED = "unchecked"
    """No contract covers the operation, or no schema covers the answer's status."""
    REQUEST_INVALID = "request_invalid"
    RESPONSE_INVALID = "response_invalid"
    STALE_CONTEXT = "stale_context"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"
    BREAKER_OPEN = "breaker_open"


Condition = Verdict
"""A failing verdict named as the condition a ``failure_modes`` entry acts on (same spelling, same values)."""

CONDITIONS: tuple[Verdict, ...] = (
    Verdict.REQUEST_INVALID,
    Verdict.RESPONSE_INVALID,
    Verdict.STALE_CONTEXT,
    Verdict.UPSTREAM_TIMEOUT,
    Verdict.UPSTREAM_ERROR,
    Verdict.BREAKER_OPEN,
)
#: Conditions a retry can repair (the same request, sent again, may meet a healthier agent).
TRANSIENT: frozenset[Verdict] = frozenset({Verdict.UPSTREAM_TIMEOUT, Verdict.UPSTREAM_ERROR})
#: Verdicts that mean a payload broke its contract: where a failure *entered* a run.
FAULTY: frozenset[Verdict] = frozenset({Verdict.REQUEST_INVALID, Verdict.RESPONSE_INVALID, Verdict.STALE_CONTEXT})
#: Spellings accepted in documents written before conditions and verdicts shared one name.
LEGACY_CONDITIONS: Mapping[str, Verdict] = {"timeout": Verdict.UPSTREAM_TIMEOUT}

SPECIFICATION = "specification"
MISALIGNMENT = "inter-agent misalignment"
INFRASTRUCTURE = "infrastructure"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    category: str
    mode: str


OUTCOMES: Mapping[Verdict, Outcome] = {
    o.verdict: o
    for o in (
        Outcome(Verdict.REQUEST_INVALID, SPECIFICATION, "disobey_task_specification"),
        Outcome(Verdict.RESPONSE_INVALID, SPECIFICATION, "disobey_task_specification"),
        Outcome(Verdict.STALE_CONTEXT, MISALIGNMENT, "ignored_other_agents_input"),
        Outcome(Verdict.UPSTREAM_TIMEOUT, INFRASTRUCTURE, "upstream_timeout"),
        Outcome(Verdict.UPSTREAM_ERROR, INFRASTRUCTURE, "upstream_error"),
        Outcome(Verdict.BREAKER_OPEN, INFRASTRUCTURE, "circuit_open"),
    )
}
WITHHOLDING = Outcome(Verdict.RESPONSE_INVALID, MISALIGNMENT, "information_withholding")


def classify(verdict: str, violations: Iterable[Mapping[str, str]] = ()) -> tuple[str, str] | None:
    """``(MAST category, failure mode)`` of a verdict; ``None`` for ``valid`` and ``unchecked``."""
    try:
        outcome = OUTCOMES.get(Verdict(verdict))
    except ValueError:
        return None
    if outcome is None:
        return None
    if outcome.verdict is Verdict.RESPONSE_INVALID:
        keywords = {v.get("keyword") for v in violations}
        if keywords and keywords <= {"required"}:
            outcome = WITHHOLDING
    return outcome.category, outcome.mode


def condition(name: str) -> Verdict:
    """The condition a document names, legacy spellings included; raises ``ValueError`` for an unknown one."""
    legacy = LEGACY_CONDITIONS.get(name)
    if legacy is not None:
        return legacy
    value = Verdict(name)
    if value not in CONDITIONS:
        raise ValueError(f"{name!r} is a verdict, not a failure condition")
    return value
