"""Failure taxonomy: every non-OK verdict gets a MAST category and a specific failure mode.

MAST (Cemri et al., 2025, "Why Do Multi-Agent LLM Systems Fail?") sorts multi-agent failures into three
categories; the gateway sees handoffs, so it maps what it can observe there:

===================  ======================================  =========================================
verdict              category                                mode
===================  ======================================  =========================================
request_invalid      specification                           disobey task specification
response_invalid     inter-agent misalignment (``required``) information withholding
response_invalid     specification (any other keyword)       disobey task specification
stale_context        inter-agent misalignment                ignored other agent's input
upstream_timeout     infrastructure (outside MAST)           upstream timeout
upstream_error       infrastructure (outside MAST)           upstream error
breaker_open         infrastructure (outside MAST)           circuit open
===================  ======================================  =========================================

A response missing required members is an agent *withholding* what the next one needs; any other schema
break (wrong type, not JSON, out of range) is output that ignores the declared specification. Task
verification failures (MAST's third category) are what the contracts themselves guard against: a verdict the
gateway enforces is verification that did happen, so none is tagged with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SPECIFICATION = "specification"
MISALIGNMENT = "inter-agent misalignment"
INFRASTRUCTURE = "infrastructure"


def classify(verdict: str, violations: Iterable[Mapping[str, str]] = ()) -> tuple[str, str] | None:
    """``(category, mode)`` for a non-OK verdict, ``None`` for ``valid``/``unchecked``."""
    if verdict == "request_invalid":
        return SPECIFICATION, "disobey task specification"
    if verdict == "response_invalid":
        keywords = {v.get("keyword") for v in violations}
        if keywords and keywords <= {"required"}:
            return MISALIGNMENT, "information withholding"
        return SPECIFICATION, "disobey task specification"
    if verdict == "stale_context":
        return MISALIGNMENT, "ignored other agent's input"
    if verdict == "upstream_timeout":
        return INFRASTRUCTURE, "upstream timeout"
    if verdict == "upstream_error":
        return INFRASTRUCTURE, "upstream error"
    if verdict == "breaker_open":
        return INFRASTRUCTURE, "circuit open"
    return None
