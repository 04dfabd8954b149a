"""Prometheus metrics, served at ``/metrics`` on the admin listener.

One registry per gateway (tests run several in one process). Latency is split so that the gateway's own cost
is visible apart from the agents': ``request_duration`` = ``upstream_duration`` + ``overhead``.

Each registry also carries the process's own ``process_*`` series (CPU, memory, open files: prometheus-client's
``ProcessCollector``) and ``agent_gateway_build_info{version}``, so a dashboard can tell which release it is
looking at. No ``*_created`` series are exposed: they double the series count and no query here uses them.

**Several worker processes** (``workers: N``): the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a directory of its
own before starting the workers, so every counter and histogram here is kept in a file per process that
prometheus-client's ``MultiProcessCollector`` sums at scrape time: one ``/metrics`` shows the whole fleet. What
only exists as live objects in each worker (in-flight requests, breaker states, DLQ depth, store errors) cannot be
read from another process, so each worker copies it into file-backed series every ``worker_poll_interval``
(:meth:`Metrics.sample`), with these ``multiprocess_mode`` choices: in-flight is ``livesum`` (the fleet's total),
the DLQ depth ``livemax`` (one store, every worker reads the same number), breaker states ``liveall`` (a ``pid``
label: breakers are per worker), store errors a counter (summed, dead workers' counts kept). ``process_*`` series
are not exposed in that mode (prometheus-client cannot aggregate them); ``build_info`` is ``max``.
Label values are bounded and machine-friendly: routes, contract ids and breaker names come from configuration,
verdicts and MAST failure modes are fixed slugs, and the MAST category is a slug too (``inter_agent_misalignment``).
"""

from __future__ import annotations

import functools
import os
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
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.policies.breaker import BreakerRegistry, State

disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide; every registry here is ours

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


BREAKER_STATES = tuple(state.value for state in State)

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client reads it when it is first imported: set in a worker's environment by its supervisor."""

_IN_FLIGHT = ("agent_gateway_in_flight_requests", "Requests currently being proxied")
_BREAKER_STATE = ("agent_gateway_breaker_state", "1 for the state each circuit breaker is in")
_DLQ_DEPTH = ("agent_gateway_dlq_depth", "Escalations waiting for a person")
_STORE_ERRORS = ("agent_gateway_store_errors", "Store operations that failed (Redis down, SQLite error)")


def multiprocess_dir() -> str | None:
    """The directory the worker processes share their series through, or ``None`` (one process)."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


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

    def in_flight(self) -> list[tuple[str, int]]:
        return sorted(self._in_flight().items())

    def breaker_states(self) -> Iterator[tuple[str, str, float]]:
        for breaker in self._breakers.all():
            for state in BREAKER_STATES:
                yield breaker.name, state, 1.0 if breaker.state.value == state else 0.0

    def dlq_depth(self) -> int:
        return self._dlq_depth()

    def store_failures(self) -> list[tuple[str, int]]:
        return sorted(self._store_failures.items())

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(*_IN_FLIGHT, labels=["route"])
        for route, count in self.in_flight():
            in_flight.add_metric([route], count)
        yield in_flight
        states = GaugeMetricFamily(*_BREAKER_STATE, labels=["breaker", "state"])
        for name, state, value in self.breaker_states():
            states.add_metric([name, state], value)
        yield states
        yield GaugeMetricFamily(*_DLQ_DEPTH, value=self.dlq_depth())
        failures = CounterMetricFamily(*_STORE_ERRORS, labels=["operation"])
        for operation, count in self.store_failures():
            failures.add_metric([operation], count)
        yield failures


class _Sampled:
    """:class:`_Live`'s readings copied into file-backed series (multiprocess mode), so that the process serving
    ``/metrics`` can report every worker's; see the module docstring for each ``multiprocess_mode``."""

    def __init__(self, live: _Live, registry: CollectorRegistry) -> None:
        self._live = live
        self._in_flight = Gauge(*_IN_FLIGHT, ["route"], registry=registry, multiprocess_mode="livesum")
        self._states = Gauge(*_BREAKER_STATE, ["breaker", "state"], registry=registry, multiprocess_mode="liveall")
        self._dlq = Gauge(*_DLQ_DEPTH, registry=registry, multiprocess_mode="livemax")
        self._failures = Counter(*_STORE_ERRORS, ["operation"], registry=registry)
        self._routes: set[str] = set()
        self._counted: dict[str, int] = {}

    def sample(self) -> None:
        current = dict(self._live.in_flight())
        self._routes.update(current)
        for route in self._routes:  # a route with nothing in flight any more must read 0, not its last count
            self._in_flight.labels(route).set(current.get(route, 0))
        for name, state, value in self._live.breaker_states():
            self._states.labels(name, state).set(value)
        self._dlq.set(self._live.dlq_depth())
        for operation, count in self._live.store_failures():
            if count > self._counted.get(operation, 0):
                self._failures.labels(operation).inc(count - self._counted.get(operation, 0))
                self._counted[operation] = count


def _fleet_registry(shared: str) -> CollectorRegistry:
    fleet = CollectorRegistry()
    MultiProcessCollector(fleet, shared)  # type: ignore[no-untyped-call]
    return fleet


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int, str], Counter] = {}
        self._histograms: dict[str, tuple[Histogram, Histogram, Histogram]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        shared = multiprocess_dir()
        self._exposed = r if shared is None else _fleet_registry(shared)
        """What ``/metrics`` shows: this registry, or with several workers the sum of every worker's files."""
        self._sampled: _Sampled | None = None
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
        if shared is None:
            ProcessCollector(registry=r)
        Gauge("agent_gateway_build_info", "Always 1; the labels say which release is running", ["version"],
              registry=r, multiprocess_mode="max").labels(__version__).set(1)  # fmt: skip
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
        live = _Live(in_flight, breakers, dlq_depth, {} if store_failures is None else store_failures)
        if self._exposed is self.registry:
            self.registry.register(live)
        else:
            self._sampled = _Sampled(live, self.registry)

    def sample(self) -> None:
        """Copy the live readings into the shared files (multiprocess mode; a no-op otherwise)."""
        if self._sampled is not None:
            self._sampled.sample()

    def exposition(self) -> bytes:
        self.sample()  # this process's own readings are current; the other workers' are one poll interval old
        return generate_latest(self._exposed)
