"""What the data plane and the admin API share, stored on both aiohttp apps under one typed key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.audit import AuditLog
from gateway.config import GatewayConfig
from gateway.contracts.registry import ContractRegistry
from gateway.metrics import Metrics
from gateway.routes import RouteRegistry
from gateway.store.base import Store


@dataclass(slots=True)
class GatewayState:
    config: GatewayConfig
    store: Store
    routes: RouteRegistry
    contracts: ContractRegistry
    audit: AuditLog
    metrics: Metrics
    ready: bool = False


STATE: web.AppKey[GatewayState] = web.AppKey("gateway_state", GatewayState)
