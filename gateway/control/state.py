"""What the data plane and the admin API share, stored on both aiohttp apps under one typed key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.contracts.registry import ContractRegistry
from gateway.control.routes import RouteRegistry
from gateway.observability.audit import AuditLog
from gateway.observability.metrics import Metrics
from gateway.policies.breaker import BreakerRegistry
from gateway.policies.escalation import Escalations
from gateway.policies.registry import PolicyRegistry
from gateway.store.base import Store


@dataclass(slots=True)
class GatewayState:
    config: GatewayConfig
    store: Store
    routes: RouteRegistry
    contracts: ContractRegistry
    policies: PolicyRegistry
    audit: AuditLog
    metrics: Metrics
    breakers: BreakerRegistry
    escalations: Escalations
    ready: bool = False


STATE: web.AppKey[GatewayState] = web.AppKey("gateway_state", GatewayState)
