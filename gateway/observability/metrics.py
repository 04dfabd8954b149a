"""Prometheus metrics, served at ``/metrics`` on the admin listener.

One registry per gateway (tests run several in one process). Latency is split so that the gateway's own cost
is visible apart from the agents': ``request_duration`` = ``upstream_duration`` + ``overhead``.

Each registry also carries the process's own ``process_*`` series (CPU, memory, open files: prometheus-client's
``ProcessCollector``) and ``agent_gateway_build_info{version}``, so a dashboard can tell which release it is
looking at. No ``*_created`` series are exposed: they double the series count and no query here uses them.
Label values are bounded and machine-friendly: routes, contract ids and breaker names come from configuration,
verdicts and MAST failure modes are fixed slugs, and the MAST category is a slug too (``inter_agent_misalignment``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.policies.breaker import BreakerRegistry, State

disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide; every registry here is ours

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


BREAKER_STATES = tuple(state.value for state in State)


@functools.cache
def slug(text: str) -> str:
    """A label value as a machine-friendly slug: ``inter-agent misalignment`` → ``inter_agent_misalignment``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class _Live(Collector):
    """Read at scrape time from the live objects: in-flight requests, breaker states, DLQ depth, and the store's
    failures per operation (counted by the store itself, which every component shares)."""

    def __init__(
        self, in_flight: Callable[[], Mapping[str, int]], breakers: BreakerRegistry, dlq_depth: Callable[[], int],
        store_failures: Mapping[str, int],
    ) -> None:  # fmt: skip
        self._in_flight = in_flight
        self._breakers = breakers
        self._dlq_depth = dlq_depth
        self._store_failures = store_failures

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "agent_gateway_in_flight_requests", "Requests currently being proxied", labels=["route"]
        )
        for route, count in sorted(self._in_flight().items()):
            in_flight.add_metric([route], count)
        yield in_flight
        states = GaugeMetricFamily(
            "agent_gateway_breaker_state", "1 for the state each circuit breaker is in", labels=["breaker", "state"]
        )
        for breaker in self._breakers.all():
            for state in BREAKER_STATES:
                states.add_metric([breaker.name, state], 1.0 if breaker.state.value == state else 0.0)
        yield states
        yield GaugeMetricFamily("agent_gateway_dlq_depth", "Escalations waiting for a person", value=self._dlq_depth())
        failures = CounterMetricFamily(
            "agent_gateway_store_errors",
            "Store operations that failed (Redis down, SQLite error)",
            labels=["operation"],
        )
        for operation, count in sorted(self._store_failures.items()):
            failures.add_metric([operation], count)
        yield failures


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int, str], Counter] = {}
        self._histograms: dict[str, tuple[Histogram, Histogram, Histogram]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "agent_gateway_requests", "Proxied requests", ["route", "operation", "status", "verdict"], registry=r
        )
        self.duration = Histogram(
            "agent_gateway_request_duration_seconds", "Time from request to response", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream = Histogram(
            "agent_gateway_upstream_duration_seconds", "Time spent waiting on the upstream agent", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead = Histogram(
            "agent_gateway_overhead_seconds", "The gateway's own time: request duration minus upstream time",
            ["route"], buckets=_OVERHEAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.violations = Counter(
            "agent_gateway_contract_violations", "Handoffs with a non-valid verdict",
            ["route", "contract", "verdict"], registry=r,
        )  # fmt: skip
        self.failures = Counter(
            "agent_gateway_failures", "Non-OK handoffs by MAST category and mode", ["route", "category", "mode"],
            registry=r,
        )  # fmt: skip
        self.retries = Counter("agent_gateway_retries", "Upstream attempts retried", ["route", "reason"], registry=r)
        self.checkpoint_hits = Counter(
            "agent_gateway_checkpoint_hits", "Answers replayed from a checkpoint instead of calling the agent",
            ["route"], registry=r,
        )  # fmt: skip
        ProcessCollector(registry=r)
        Gauge("agent_gateway_build_info", "Always 1; the labels say which release is running", ["version"],
              registry=r).labels(__version__).set(1)  # fmt: skip
        self.audit_dropped = Counter(
            "agent_gateway_audit_dropped",
            "Audit records dropped: the write queue was full (also with failed writes waiting in it)",
            registry=r,
        )

    def request_done(
        self, route: str, operation: str, status: int, verdict: str, elapsed: float, upstream: float | None
    ) -> None:
        """Count one request and observe its latencies; label children are cached (``labels()`` costs µs)."""
        key = (route, operation, status, verdict)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(route, operation, str(status), verdict)
        counter.inc()
        histograms = self._histograms.get(route)
        if histograms is None:
            histograms = self._histograms[route] = (
                self.duration.labels(route),
                self.upstream.labels(route),
                self.overhead.labels(route),
            )
        histograms[0].observe(elapsed)
        if upstream is not None:
            histograms[1].observe(upstream)
            histograms[2].observe(max(0.0, elapsed - upstream))

    def failure(self, route: str, category: str, mode: str) -> None:
        """Count a non-OK handoff by its MAST category (as a slug) and failure mode."""
        self.failures.labels(route, slug(category), mode).inc()

    def watch(
        self, in_flight: Callable[[], Mapping[str, int]], breakers: BreakerRegistry, dlq_depth: Callable[[], int],
        store_failures: Mapping[str, int] | None = None,
    ) -> None:  # fmt: skip
        """Scrape-time metrics; ``store_failures`` is the store's ``failures`` counter (a live mapping)."""
        self.registry.register(_Live(in_flight, breakers, dlq_depth, {} if store_failures is None else store_failures))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
