"""A fuzz run's findings: one typed report (the admin API returns it as JSON), read as text or JUnit XML.

Each failing case carries what a person needs to reproduce and fix it without rerunning anything: the request
exactly as sent (already shrunk), the answer's status and body, the verdict in the gateway's vocabulary, and each
violation with its JSON pointer, worded as the gateway's problem documents word it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

NearValidMode = Literal["require", "report", "off"]
CaseKind = Literal["generated", "boundary", "near-valid"]
BODY_SHOWN = 2000
"""Characters of a request or answer a text report prints (the JSON report keeps what was parsed)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FuzzViolation(_Model):
    pointer: str
    keyword: str
    message: str


class FuzzCase(_Model):
    """One request and what became of it."""

    kind: CaseKind
    what: str = Field(description="how the request was made: generated, the boundary, or the mutation")
    method: str
    path: str
    request: Any
    status: int | None = Field(description="null when no answer came (connection failed or timed out)")
    response: Any = Field(description="the answer's JSON, or its text, cut at 2000 characters")
    outcome: str = Field(description="verdict, as in X-Contract-Verdict: valid, unchecked, response_invalid, …")
    gateway_verdict: str | None = Field(None, description="the gateway's X-Contract-Verdict, when fuzzed through it")
    reason: str = ""
    violations: list[FuzzViolation] = Field(default_factory=list)
    violation_count: int = 0


class FuzzReport(_Model):
    contract: str
    version: int
    target: str
    seed: int
    max_examples: int
    seconds: float
    near_valid: NearValidMode
    sent: int = Field(description="requests sent, shrinking included (a repeated request is sent once)")
    generated: int
    boundary: int
    near_valid_sent: int
    budget_exhausted: bool = Field(description="the --seconds budget ran out before the search was done")
    elapsed_seconds: float
    failures: list[FuzzCase] = Field(description="contract breaches: each makes the run fail")
    warnings: list[FuzzCase] = Field(description="near-valid requests the agent did not refuse (--near-valid=report)")

    @property
    def clean(self) -> bool:
        return not self.failures


def _shown(value: Any) -> str:
    text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in orjson.dumps(value).decode())
    # a text answer is quoted too, so it stays on one line; invisible characters (a shrunk "\u0080") are escaped
    return text if len(text) <= BODY_SHOWN else f"{text[:BODY_SHOWN]}… ({len(text)} characters)"


def _case_lines(number: int, case: FuzzCase) -> list[str]:
    lines = [
        f"{number}. {case.outcome}: {case.reason} ({case.kind}: {case.what})",
        f"   request:  {case.method} {case.path} {_shown(case.request)}",
        f"   response: {case.status if case.status is not None else 'none'} {_shown(case.response)}",
    ]
    if case.gateway_verdict is not None:
        lines.append(f"   gateway:  X-Contract-Verdict {case.gateway_verdict}")
    if case.violations:
        lines.append("   violations:")
        lines += [f"     {v.pointer or '/'} {v.keyword}: {v.message}" for v in case.violations]
        if case.violation_count > len(case.violations):
            lines.append(f"     … more than {len(case.violations)} in all")
    return lines


def render_text(report: FuzzReport) -> str:
    """The report a person reads in a terminal or a CI log."""
    lines = [
        f"contracts fuzz {report.contract} ({f'version {report.version}' if report.version else 'from a file'}) "
        f"against {report.target}, seed {report.seed}",
        f"sent {report.sent} requests in {report.elapsed_seconds:.1f} s: {report.generated} generated "
        f"({report.max_examples} examples per search, plus shrinking), {report.boundary} boundary, "
        f"{report.near_valid_sent} near-valid",
    ]
    if report.budget_exhausted:
        lines.append(f"stopped by the time budget ({report.seconds:g} s): the search is incomplete")
    if report.failures:
        lines.append(f"\nFAILED: {len(report.failures)} contract breach(es), each shrunk to a minimal request")
    for number, case in enumerate(report.failures, start=1):
        lines += ["", *_case_lines(number, case)]
    if report.warnings:
        lines.append(f"\n{len(report.warnings)} near-valid request(s) not refused with a 4xx (reported, not failing):")
        for number, case in enumerate(report.warnings, start=1):
            lines += ["", *_case_lines(number, case)]
    if report.clean:
        refused = (
            ""
            if report.near_valid == "off"
            else f"; {report.near_valid_sent - len(report.warnings)} near-valid refused"
        )
        lines.append(f"\nOK: every answer to a valid request met the contract{refused}")
    return "\n".join(lines) + "\n"


def junit_xml(report: FuzzReport) -> bytes:
    """JUnit XML for CI: one test case per finding, plus one per kind of request that found nothing."""
    suite = ET.Element(
        "testsuite", name=f"contracts fuzz {report.contract}", tests="0", failures=str(len(report.failures)),
        errors="0", skipped="0", time=f"{report.elapsed_seconds:.3f}",
    )  # fmt: skip
    for case in report.failures:
        element = ET.SubElement(suite, "testcase", classname=report.contract, name=f"{case.kind}: {case.what}")
        failure = ET.SubElement(element, "failure", message=f"{case.outcome}: {case.reason}", type=case.outcome)
        failure.text = "\n".join(_case_lines(1, case)[1:])
    for case in report.warnings:
        element = ET.SubElement(suite, "testcase", classname=report.contract, name=f"{case.kind}: {case.what}")
        ET.SubElement(element, "system-out").text = "\n".join(_case_lines(1, case))
    failing = {case.kind for case in report.failures}
    counts = (("generated", report.generated), ("boundary", report.boundary), ("near-valid", report.near_valid_sent))
    for kind, count in counts:
        if count and kind not in failing:
            ET.SubElement(suite, "testcase", classname=report.contract, name=f"{kind}: {count} requests")
    suite.set("tests", str(len(suite)))
    written: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return written
