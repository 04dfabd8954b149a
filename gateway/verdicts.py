"""Verdicts: recording what a contract said about a payload, and telling the caller in response headers.

``judge`` is the one place a violation either passes on (``pass``, with a warning and a verdict header) or
becomes a :class:`ContractViolation`; ``mark`` puts the run id, checkpoint status and verdict on every answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp

from gateway.contracts.validation import CompiledContract
from gateway.errors import ContractViolation, Direction, Violation
from gateway.exchange import Exchange

log = logging.getLogger("agent_gateway.proxy")

VERDICT_HEADER = "X-Contract-Verdict"
RUN_HEADER = "X-Run-Id"
CHECKPOINT_HEADER = "X-Checkpoint"


def judge(
    exchange: Exchange,
    contract: CompiledContract,
    direction: Direction,
    violations: Sequence[Violation],
    total: int,
    *,
    verdict: str | None = None,
) -> None:
    """Record the verdict; raise the violation unless the contract says to let it pass."""
    if not total:
        exchange.verdict = exchange.verdict or "valid"
        exchange.span.set_attribute("contract.verdict", exchange.verdict)
        return
    verdict = verdict or f"{direction}_invalid"
    exchange.verdict = verdict
    exchange.add_violations(direction, tuple(violations), total)
    exchange.span.set_attributes({"contract.verdict": verdict, "contract.violations": exchange.violation_count})
    if contract.spec.action(verdict) == "pass":
        exchange.notes.append(f"{verdict.replace('_invalid', '')}_violations={total}")
        log.warning(
            "contract %s v%d: %s passed on (%s): %d violation(s), first at %r (%s)",
            contract.id, contract.version, verdict, contract.spec.mode, total,
            violations[0].pointer, violations[0].keyword,
            extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id},
        )  # fmt: skip
        return
    raise ContractViolation(
        contract=contract.id, version=contract.version, direction=direction, violations=violations,
        total=total, stale=verdict == "stale_context",
    )  # fmt: skip


def mark(exchange: Exchange, headers: aiohttp.typedefs.LooseHeaders) -> None:
    """Verdict, run id and checkpoint headers on whatever goes back to the caller."""
    headers[RUN_HEADER] = exchange.run_id  # type: ignore[index]
    if exchange.checkpoint is not None:
        headers[CHECKPOINT_HEADER] = exchange.checkpoint  # type: ignore[index]
    contract = exchange.contract
    if contract is None or exchange.verdict is None:
        return
    parts = [exchange.verdict, f"contract={contract.id}", f"version={contract.version}", *exchange.notes]
    if exchange.attempt > 1:
        parts.append(f"attempts={exchange.attempt}")
    headers[VERDICT_HEADER] = "; ".join(parts)  # type: ignore[index]
