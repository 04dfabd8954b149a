"""Policy documents: the shipped JSON Schema, and the typed, defaulted form the data path uses.

Every default lives here, in one place, and is documented in the README's "Policies" section.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from jsonschema.validators import Draft202012Validator

from gateway.contracts.document import Action, ContractDocumentError, failure_modes, schema_errors
from gateway.outcomes import Verdict

#: Methods whose semantics make a repeat safe (RFC 9110 §9.2.2); others need an ``Idempotency-Key``.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@cache
def policy_meta_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("gateway.policies").joinpath("policy.schema.json").read_text())
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(policy_meta_schema())


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float | None = None
    """Defaults to the gateway-wide ``timeouts.connect``."""
    attempt: float | None = None
    """Whole-attempt limit (send, wait, read); defaults to none beyond the gateway-wide read timeout."""
    total: float | None = None
    """Deadline across all attempts and backoff; an incoming ``X-Request-Timeout-Ms`` can only shorten it."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    ratio: float = 0.2
    window_seconds: float = 10.0
    min_retries: int = 3
    """Retries always allowed per window, so a quiet route can still retry (Envoy's ``min_retry_concurrency``)."""


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    statuses: frozenset[int] = frozenset({502, 503, 504})
    honor_retry_after: bool = True
    exhausted: Literal["reject", "escalate", "fallback"] = "reject"
    budget: RetryBudget = RetryBudget()


@dataclass(frozen=True, slots=True)
class Breaker:
    scope: Literal["upstream", "operation"] = "upstream"
    window: Literal["count", "time"] = "count"
    window_size: float = 20
    """Calls (count window) or seconds (time window) the failure rate is computed over."""
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5
    consecutive_failures: int | None = None
    slow_call_seconds: float | None = None
    slow_call_rate_threshold: float = 1.0
    wait_in_open_seconds: float = 30.0
    half_open_calls: int = 3
    sharing: Literal["sidecar", "fleet"] = "sidecar"
    """``fleet``: transitions to open, closed and the forced states are shared through the store with every
    gateway on it (see ``gateway/policies/fleet.py``); each gateway still counts its own calls."""


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret_env: str | None = None
    max_attempts: int = 12
    """Attempts 0.5 s apart, doubling up to 5 minutes between them (12: about 14 minutes in all)."""
    give_up_after_seconds: float = 3600.0
    """However many attempts are left, the delivery is marked failed this long after the escalation."""


@dataclass(frozen=True, slots=True)
class Escalation:
    respond_status: Literal[202, 503] = 503
    webhook: Webhook | None = None


StoreErrorAction = Literal["refuse", "bypass"]
"""What the data path does when the store fails a lookup it needs: ``refuse`` (503 + Retry-After) or ``bypass``
(carry on without it, and say so in the answer)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    enabled: bool = True
    run_step: bool = False
    ttl_seconds: float = 24 * 3600
    """How long a stored answer is replayed."""
    max_bytes: int = 1024 * 1024
    lease_seconds: float = 30.0
    """How long an in-flight claim outlives its gateway: renewed every third of it while the call runs, so a
    gateway that dies mid-call frees the key within this many seconds (instead of answering 409 for a day)."""
    on_store_error: StoreErrorAction = "refuse"
    """When the claim cannot be made: ``refuse`` keeps the at-most-once promise an ``Idempotency-Key`` asks for
    (the caller retries later); ``bypass`` calls the agent anyway, for agents whose calls are safe to repeat."""


@dataclass(frozen=True, slots=True)
class Context:
    on_store_error: StoreErrorAction = "refuse"
    """When the run's artifact versions cannot be read: ``refuse`` never passes a request as checked when it
    was not; ``bypass`` forwards it with ``context=unchecked`` in the verdict header."""


@dataclass(frozen=True, slots=True)
class Fallback:
    status: int = 200
    body: Any = None
    route: str | None = None


@dataclass(frozen=True, slots=True)
class PolicySpec:
    id: str
    route: str | None
    contract: str | None
    failure_modes: Mapping[Verdict, Action] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    retry: Retry | None = None
    breaker: Breaker | None = None
    escalation: Escalation = Escalation()
    checkpoint: Checkpoint = Checkpoint()
    context: Context = Context()
    fallback: Fallback | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def failure_statuses(self) -> frozenset[int]:
        """Agent answers that count as ``upstream_error`` (for the breaker, and for retries when configured)."""
        return self.retry.statuses if self.retry is not None else DEFAULT_FAILURE_STATUSES


DEFAULT_FAILURE_STATUSES = Retry().statuses
DEFAULT_POLICY = PolicySpec(id="default", route=None, contract=None)
"""In force where no policy is attached: no retries, no breaker, checkpoints on ``Idempotency-Key``."""


def _retry(raw: Mapping[str, Any] | None) -> Retry | None:
    if raw is None:
        return None
    fields = dict(raw)
    if "statuses" in fields:
        fields["statuses"] = frozenset(fields["statuses"])
    if "budget" in fields:
        fields["budget"] = RetryBudget(**fields["budget"])
    return Retry(**fields)


def parse_policy(doc: Mapping[str, Any]) -> PolicySpec:
    """Check ``doc`` against ``policy.schema.json``; raise :class:`ContractDocumentError` listing problems."""
    errors = schema_errors(_validator(), doc)
    if errors:
        raise ContractDocumentError(f"invalid policy document: {len(errors)} problem(s)", errors)
    escalation = dict(doc.get("escalation", {}))
    if "webhook" in escalation:
        escalation["webhook"] = Webhook(**escalation["webhook"])
    fallback = doc.get("fallback")
    return PolicySpec(
        id=doc["id"],
        route=doc["attach"].get("route"),
        contract=doc["attach"].get("contract"),
        failure_modes=failure_modes(doc.get("failure_modes", {})),
        timeouts=Timeouts(**doc.get("timeouts", {})),
        retry=_retry(doc.get("retry")),
        breaker=Breaker(**doc["breaker"]) if "breaker" in doc else None,
        escalation=Escalation(**escalation),
        checkpoint=Checkpoint(**doc.get("checkpoint", {})),
        context=Context(**doc.get("context", {})),
        fallback=None if fallback is None else Fallback(
            route=fallback.get("route"), **fallback.get("response", {})
        ),
        raw=doc,
    )  # fmt: skip
