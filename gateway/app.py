"""Assembling and running a gateway: the store, registries, data-plane app and admin app, in one place.

Start-up order: open the store → load stored routes (config routes override by name) → load stored contracts
and policies → register document files whose content differs from their active version → open the client
session → bind the data plane → bind the admin API → bind the health listener → mark ready → watch the document
directories (gateway.control.watch). ``close`` undoes it in reverse, except that the health listener closes after
the data plane, so ``/readyz`` reports the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from gateway.admin.app import build_admin_app
from gateway.background import stop_task, while_serving
from gateway.config import GatewayConfig
from gateway.contracts.context import ContextTracker
from gateway.contracts.registry import ContractRegistry
from gateway.control.health import serve_health
from gateway.control.routes import RouteRegistry
from gateway.control.state import STATE, GatewayState
from gateway.control.watch import DirectoryWatcher
from gateway.dataplane.egress import serve_egress
from gateway.dataplane.front import stamp
from gateway.dataplane.listener import GuardedRunner, serve_data_app
from gateway.dataplane.proxy import Parts, Proxy
from gateway.dataplane.recover import escalation_outcome
from gateway.dataplane.transport import new_session
from gateway.dataplane.upstream import HttpUpstream
from gateway.observability.audit import AuditLog
from gateway.observability.metrics import Metrics
from gateway.observability.observe import Observer
from gateway.observability.telemetry import build_tracer_provider, propagator, tracer_for
from gateway.policies.breaker import BreakerRegistry
from gateway.policies.checkpoint import Checkpoints
from gateway.policies.escalation import OUTCOME_PATH, Escalations
from gateway.policies.fleet import FleetBoard
from gateway.policies.registry import PolicyRegistry
from gateway.redaction import redactor_for
from gateway.store.base import ChangeFeed, Store, cancel_requested
from gateway.store.sqlite import SQLiteStore
from gateway.workers import is_primary, worker_upkeep

log = logging.getLogger("agent_gateway")

LOOPBACK = "127.0.0.1"


def admin_token(config: GatewayConfig, insecure: bool) -> tuple[bool, str | None, str]:
    """Whether the admin API starts, with which token, on which host (loopback when insecure)."""
    token = config.admin.token.get_secret_value() if config.admin.token else None
    if token:
        return True, token, config.admin.host
    if insecure or config.admin.insecure:
        return True, None, LOOPBACK
    return False, None, config.admin.host


@dataclass
class RunningGateway:
    """A started gateway; ports are the bound ones (useful when the config asked for port 0)."""

    state: GatewayState
    proxy: Proxy
    data_runner: web.AppRunner
    admin_runner: web.AppRunner | None
    tracer_provider: TracerProvider
    data_port: int
    admin_port: int | None
    health_runner: web.AppRunner | None = None
    watcher: DirectoryWatcher | None = None
    """Applies changes to ``contract_dirs``/``policy_dirs`` while running (``None``: no such dirs)."""
    watching: asyncio.Task[None] | None = None
    egress_runner: web.AppRunner | None = None
    """The agent's outgoing calls (``gateway/dataplane/egress.py``); ``None`` without ``egress.port``."""
    fleet: FleetBoard | None = None
    """Shares ``breaker.sharing: fleet`` transitions through the store (``gateway/policies/fleet.py``)."""

    @property
    def data_url(self) -> str:
        return f"http://{LOOPBACK}:{self.data_port}"

    @property
    def admin_url(self) -> str | None:
        return None if self.admin_port is None else f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def health_url(self) -> str | None:
        return None if self.health_runner is None else f"http://{LOOPBACK}:{_bound_port(self.health_runner)}"

    @property
    def egress_url(self) -> str | None:
        return None if self.egress_runner is None else f"http://{LOOPBACK}:{_bound_port(self.egress_runner)}"

    def rescan(self) -> bool:
        """Read the document directories again now (``SIGHUP``); false when there are none to read."""
        if self.watcher is None:
            log.warning("nothing to rescan: no contract_dirs or policy_dirs are set")
            return False
        log.info("rescanning contract_dirs and policy_dirs")
        self.watcher.rescan()
        return True

    async def close(self) -> None:
        self.state.ready = False
        await stop_task(self.watching)  # first: no registration may start while the store closes
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
        if self.egress_runner is not None:  # before the data plane, whose cleanup closes the shared session
            await self.egress_runner.cleanup()
        await self.data_runner.cleanup()
        if self.health_runner is not None:
            await self.health_runner.cleanup()
        await self.state.audit.close()
        if self.fleet is not None:  # its last writes need the store
            await self.fleet.close()
        await self.state.store.close()
        self.tracer_provider.shutdown()


def _bound_port(runner: web.AppRunner) -> int:
    server = runner.addresses[0]
    return int(server[1])


async def follow_changes(state: GatewayState) -> None:
    """Rebuild a table whenever another gateway sharing the store changes it (Redis pub/sub)."""
    assert isinstance(state.store, ChangeFeed)
    registries: dict[str, Any] = {"route": state.routes, "contract": state.contracts, "policy": state.policies}
    while not cancel_requested():
        try:
            async for kind in state.store.changes():
                if kind in registries:
                    await registries[kind].load()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lost the store's change feed; resubscribing in 1 s")
            await asyncio.sleep(1)


def open_store(config: GatewayConfig) -> Store:
    if config.store.backend == "redis":
        from gateway.store.redis import RedisStore  # only sidecar fleets need the redis client

        return RedisStore(config.store.url, prefix=config.store.prefix, retention_seconds=config.audit.max_age_seconds)
    return SQLiteStore(config.store.path)


async def _load_state(
    config: GatewayConfig, unwind: contextlib.AsyncExitStack
) -> tuple[GatewayState, DirectoryWatcher]:
    store = open_store(config)
    unwind.push_async_callback(store.close)
    routes, contracts, policies = RouteRegistry(store), ContractRegistry(store), PolicyRegistry(store)
    await routes.load(config.routes)
    await contracts.load()
    await policies.load()
    watcher = DirectoryWatcher(
        ((contracts, config.contract_dirs), (policies, config.policy_dirs)), config.watch_interval
    )
    await watcher.load()  # the files, registered where they differ from the versions in force; raises if broken
    metrics = Metrics()
    return GatewayState(
        config=config, store=store, routes=routes, contracts=contracts, policies=policies,
        audit=AuditLog(store, config.audit, on_drop=metrics.audit_dropped.inc), metrics=metrics,
        breakers=BreakerRegistry(), escalations=Escalations(store),
    ), watcher  # fmt: skip


def _build_proxy(state: GatewayState, session: aiohttp.ClientSession, provider: TracerProvider) -> Proxy:
    config = state.config
    tracer = tracer_for(provider)
    proxy = Proxy(
        Parts(
            routes=state.routes, contracts=state.contracts, policies=state.policies,
            upstream=HttpUpstream(session, tracer, config.limits, config.timeouts), limits=config.limits,
            timeouts=config.timeouts, tracer=tracer, propagator=propagator(),
            observer=Observer(state.audit, state.metrics, config.audit), context=ContextTracker(state.store),
            breakers=state.breakers, escalations=state.escalations,
            checkpoints=Checkpoints(state.store, redactor=redactor_for(config.audit)),
            redactor=redactor_for(config.audit), keep_payloads=config.audit.enabled and config.audit.payloads,
        )
    )  # fmt: skip
    state.metrics.watch(
        proxy.admit.in_flight_by_route, state.breakers, state.escalations.pending_count, state.store.failures
    )
    return proxy


async def _serve_data_plane(
    state: GatewayState, proxy: Proxy, session: aiohttp.ClientSession, unwind: contextlib.AsyncExitStack
) -> web.AppRunner:
    config = state.config

    async def close_session(_: web.Application) -> None:
        await state.escalations.close()
        await session.close()

    data_app = web.Application(client_max_size=config.limits.max_body_bytes)
    data_app[STATE] = state
    if isinstance(state.store, ChangeFeed):
        data_app.cleanup_ctx.append(while_serving("store-changes", lambda _: follow_changes(state)))
    if config.workers > 1:  # tables changed by worker 0 (polled without a change feed), shared metric readings
        data_app.cleanup_ctx.append(worker_upkeep)
    data_app.on_cleanup.append(close_session)
    data_app.on_response_prepare.append(stamp)
    data_app.router.add_get(OUTCOME_PATH + "{id}", escalation_outcome(state.escalations))
    data_app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return await serve_data_app(data_app, config, config.listen.host, config.listen.port, unwind)


ADMIN_SHUTDOWN_SECONDS = 5.0
"""How long admin requests in flight may finish on shutdown. The admin listener closes before the data plane,
so its wait delays the data plane's drain: aiohttp's 60 s default, spent on a long admin call (a fuzz run, an
``/events`` stream), would eat the pod's whole termination grace period."""


async def _serve_admin(
    state: GatewayState, insecure_admin: bool, unwind: contextlib.AsyncExitStack
) -> tuple[web.AppRunner | None, int | None]:
    config = state.config
    start_admin, token, host = admin_token(config, insecure_admin)
    if not start_admin:
        log.warning("admin API disabled: set AGENT_GATEWAY_ADMIN_TOKEN, or pass --insecure-admin for local development")
        return None, None
    if token is None:
        log.warning("admin API WITHOUT authentication on %s (--insecure-admin): local development only", host)
    admin_runner = GuardedRunner(
        build_admin_app(state, token=token),
        head_timeout=config.timeouts.header,
        access_log=None,
        shutdown_timeout=ADMIN_SHUTDOWN_SECONDS,
    )
    await admin_runner.setup()
    unwind.push_async_callback(admin_runner.cleanup)
    await web.TCPSite(admin_runner, host, config.admin.port, reuse_address=True).start()
    return admin_runner, _bound_port(admin_runner)


async def start_gateway(
    config: GatewayConfig,
    *,
    insecure_admin: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> RunningGateway:
    async with contextlib.AsyncExitStack() as unwind:  # a start that fails midway closes what it opened
        state, watcher = await _load_state(config, unwind)
        provider = tracer_provider or build_tracer_provider()
        session = new_session(config.timeouts)
        unwind.push_async_callback(session.close)
        await state.escalations.bind(session)
        fleet = FleetBoard(state.store, state.breakers)
        fleet.start()
        unwind.push_async_callback(fleet.close)
        proxy = _build_proxy(state, session, provider)
        state.audit.start()
        unwind.push_async_callback(state.audit.close)
        data_runner = await _serve_data_plane(state, proxy, session, unwind)
        egress_runner = await serve_egress(state, proxy, unwind)
        primary = is_primary()  # with workers > 1, worker 0 alone serves admin, health and the watcher
        admin_runner, admin_port = await _serve_admin(state, insecure_admin, unwind) if primary else (None, None)
        health_runner = await serve_health(state, unwind) if primary else None
        unwind.pop_all()  # started: RunningGateway.close owns all of it now
    state.ready = True
    running = RunningGateway(
        state, proxy, data_runner, admin_runner, provider, _bound_port(data_runner), admin_port, health_runner
    )
    running.egress_runner = egress_runner
    running.fleet = fleet
    if watcher.active and primary:
        running.watcher = watcher
        running.watching = asyncio.create_task(watcher.run(), name="document-watcher")
    return running
