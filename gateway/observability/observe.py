"""What happens after every handoff: an audit record, metrics, and one structured log line.

Kept out of ``proxy.py`` so the data path reads as the steps that decide a request's fate; this module only
reports on them.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace

from prometheus_client import Counter

from gateway.config import AuditSettings
from gateway.dataplane.exchange import AttemptSummary, Exchange
from gateway.observability.audit import AuditLog
from gateway.observability.logs import ACCESS_LOGGER
from gateway.observability.metrics import Metrics
from gateway.observability.spans import received_path
from gateway.outcomes import Verdict, classify
from gateway.redaction import redactor_for
from gateway.store.base import HandoffRecord

access_log = logging.getLogger(ACCESS_LOGGER)

ESCALATION_FAILED_NOTE = "escalation=failed"
"""The note (also shown in ``X-Contract-Verdict``) recovery leaves when the dead-letter queue refused an item."""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _size(body: bytes | None, declared: int | None) -> int | None:
    return declared if body is None else len(body)


def _access_level(status: int, verdict: str) -> int:
    """The access log's level for a handoff: DEBUG for a success (one INFO line per request costs ~40% of the
    throughput, measured), INFO for a refusal or a failing verdict, WARNING for a 5xx; failures always show at
    the shipped ``log_level: INFO``, successes only when asked for with ``DEBUG``."""
    if status >= 500:
        return logging.WARNING
    if status >= 400 or verdict not in (Verdict.VALID, Verdict.UNCHECKED):
        return logging.INFO
    return logging.DEBUG


class Observer:
    def __init__(self, audit: AuditLog, metrics: Metrics, settings: AuditSettings) -> None:
        self._audit = audit
        self._metrics = metrics
        self._settings = settings
        self._redactor = redactor_for(settings)
        self._escalation_failures = Counter(
            "agent_gateway_escalation_store_errors", "Escalations refused with 503 because the dead-letter queue "
            "could not be written (the caller was told to retry)", ["route"], registry=metrics.registry,
        )  # fmt: skip

    def finish(self, exchange: Exchange) -> None:
        elapsed = time.perf_counter() - exchange.started
        route = exchange.route.name if exchange.route else "-"
        verdict = exchange.verdict or Verdict.UNCHECKED
        taxonomy = classify(verdict, exchange.violations)
        self._measure(exchange, route, verdict, taxonomy, elapsed)
        for failed in exchange.failed_attempts:
            self._metrics.retries.labels(route, failed.condition).inc()
        if exchange.checkpoint == "hit":
            self._metrics.checkpoint_hits.labels(route).inc()
        if ESCALATION_FAILED_NOTE in exchange.notes:
            self._escalation_failures.labels(route).inc()
        if exchange.route is not None and self._audit.enabled:
            for failed in exchange.failed_attempts:
                self._audit.record(self._attempt_record(exchange, failed), exchange.request_body, failed.response_body)
            record = self._record(exchange, verdict, taxonomy, elapsed)
            self._audit.record(record, exchange.request_body, exchange.response_body)
        level = _access_level(exchange.status, verdict)
        if access_log.isEnabledFor(level):
            self._log_access(exchange, level, route, verdict, elapsed)

    @staticmethod
    def _log_access(exchange: Exchange, level: int, route: str, verdict: str, elapsed: float) -> None:
        """The access line: OTel field names for the HTTP parts (the same words as the span's attributes), the
        trace and span ids to find the span, the verdict, and the durations in milliseconds."""
        request = exchange.request
        path = received_path(request)
        access_log.log(
            level,
            "%s %s %d %s",
            request.method, path, exchange.status, verdict,
            extra={
                "http.request.method": request.method, "url.path": path,
                "http.response.status_code": exchange.status, "verdict": verdict,
                "trace_id": exchange.trace_id, "span_id": format(exchange.span.get_span_context().span_id, "016x"),
                "run_id": exchange.run_id, "route": route, "source": exchange.source,
                "contract": exchange.contract.id if exchange.contract else None,
                "duration_ms": round(elapsed * 1000, 3), "upstream_ms": _ms(exchange.upstream_seconds),
            },
        )  # fmt: skip

    def _measure(
        self, exchange: Exchange, route: str, verdict: str, taxonomy: tuple[str, str] | None, elapsed: float
    ) -> None:
        m = self._metrics
        operation = exchange.contract.id if exchange.contract else "-"
        m.request_done(route, operation, exchange.status, verdict, elapsed, exchange.upstream_seconds)
        if taxonomy is not None:
            m.failure(route, *taxonomy)
            m.violations.labels(route, operation, verdict).inc()

    def _record(
        self, exchange: Exchange, verdict: str, taxonomy: tuple[str, str] | None, elapsed: float
    ) -> HandoffRecord:
        assert exchange.route is not None
        contract = exchange.contract
        keep = self._settings.payloads
        redactor = self._redactor
        return HandoffRecord(
            id=f"{random.getrandbits(64):016x}",
            run_id=exchange.run_id,
            step=exchange.step,
            attempt=exchange.attempt,
            source=exchange.source,
            target=exchange.route.name,
            method=exchange.request.method,
            path=exchange.path,
            status=exchange.status,
            verdict=verdict,
            trace_id=exchange.trace_id,
            started_at=exchange.started_at,
            duration_ms=elapsed * 1000,
            upstream_ms=_ms(exchange.upstream_seconds),
            contract=contract.id if contract else None,
            contract_version=contract.version if contract else None,
            checkpoint=exchange.checkpoint,
            violations=redactor.violations(exchange.violations),
            violation_count=exchange.violation_count,
            category=taxonomy[0] if taxonomy else None,
            failure_mode=taxonomy[1] if taxonomy else None,
            request_bytes=_size(exchange.request_body, exchange.request.content_length),
            response_bytes=_size(exchange.response_body, None),
            request_payload=redactor.document(exchange.request_document) if keep else None,
            response_payload=redactor.document(exchange.response_document) if keep else None,
        )  # fmt: skip

    def _attempt_record(self, exchange: Exchange, failed: AttemptSummary) -> HandoffRecord:
        """A retried attempt: what the agent answered that time, and why it was not accepted."""
        taxonomy = classify(failed.condition, failed.violations)
        base = self._record(exchange, failed.condition, taxonomy, failed.upstream_seconds or 0.0)
        return replace(
            base, attempt=failed.number, status=failed.status, violations=self._redactor.violations(failed.violations),
            violation_count=failed.violation_count, upstream_ms=_ms(failed.upstream_seconds),
            response_bytes=_size(failed.response_body, None), response_payload=None,
        )  # fmt: skip
