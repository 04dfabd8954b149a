"""Prometheus metrics, served at ``/metrics`` on the admin listener.

One registry per gateway (tests run several in one process). Latency is split so that the gateway's own cost
is visible apart from the agents': ``request_duration`` = ``upstream_duration`` + ``overhead``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class _InFlight(Collector):
    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "agent_gateway_in_flight_requests", "Requests currently being proxied", labels=["route"]
        )
        for route, count in sorted(self._read().items()):
            family.add_metric([route], count)
        yield family


class Metrics:
    def __init__(self) -> None:
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
        self.audit_dropped = Counter(
            "agent_gateway_audit_dropped", "Audit records dropped because the write queue was full", registry=r
        )

    def watch_in_flight(self, read: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_InFlight(read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
