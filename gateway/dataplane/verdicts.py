"""Judging a payload: the one place a contract's verdict either passes on (``pass``: recorded, warned about,
shown in ``X-Contract-Verdict``) or becomes a :class:`ContractViolation`. Used by the request check and the
relay alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.contracts.validation import CompiledContract
from gateway.dataplane.exchange import Exchange
from gateway.errors import ContractViolation, Direction, Violation
from gateway.outcomes import Verdict

log = logging.getLogger("agent_gateway.proxy")


def judge(
    exchange: Exchange,
    contract: CompiledContract,
    direction: Direction,
    violations: Sequence[Violation],
    total: int,
    *,
    verdict: Verdict | None = None,
) -> None:
    """Record the verdict; raise the violation unless the contract says to let it pass."""
    if not total:
        exchange.verdict = exchange.verdict or Verdict.VALID
        return
    verdict = verdict or (Verdict.REQUEST_INVALID if direction == "request" else Verdict.RESPONSE_INVALID)
    exchange.verdict = verdict
    exchange.add_violations(direction, tuple(violations), total)
    if contract.spec.action(verdict) == "pass":
        exchange.notes.append(f"{verdict.value.replace('_invalid', '')}_violations={total}")
        log.warning(
            "contract %s v%d: %s passed on (%s): %d violation(s), first at %r (%s)",
            contract.id, contract.version, verdict.value, contract.spec.mode, total,
            violations[0].pointer, violations[0].keyword,
            extra={"trace_id": exchange.trace_id, "run_id": exchange.run_id},
        )  # fmt: skip
        return
    raise ContractViolation(
        contract=contract.id, version=contract.version, direction=direction, violations=violations,
        total=total, stale=verdict is Verdict.STALE_CONTEXT,
    )  # fmt: skip
