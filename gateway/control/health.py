"""The health listener: liveness, readiness and Prometheus metrics on a port of their own, with no token.

Why a listener of its own: the admin API starts only with a token and binds loopback by default, so probes and a
container ``HEALTHCHECK`` aimed at it would need the secret and an exposed admin port. Nothing here is sensitive
(a status, check names, counters), so this listener needs neither; who may reach it is the NetworkPolicy's job.

- ``GET /healthz``: the process answers. The listener binds *last* in start-up (after the store, the tables and
  the document directories are loaded and the data plane is bound), so a first 200 also means "started": it is
  the startup probe too, and a native sidecar's startup probe passing is what lets the kubelet start the agent.
- ``GET /readyz``: 200 while the gateway is started and not shutting down, its store answers and (with
  ``health.agent_url``) the agent answers 2xx; otherwise a 503 problem document naming each check's result.
  Every check is bounded by ``health.check_timeout``: a probe must not hang on a blackholed Redis.
- ``GET /metrics``: the same Prometheus exposition as the admin API's ``/metrics``. The auth choice: the admin
  copy sits behind the bearer token; this copy is unauthenticated so Prometheus needs no secret, and the
  NetworkPolicy admits only the monitoring namespace to this port.

Drain: :meth:`gateway.app.RunningGateway.close` marks the state not ready first and closes this listener after the
data plane, so while the data plane finishes its in-flight requests (aiohttp's ``shutdown_timeout``, 60 s)
``/readyz`` answers 503 and ``/healthz`` still 200 — the kubelet does not restart a gateway that is draining.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.admin.api import problem_middleware
from gateway.config import HealthSettings
from gateway.control.state import STATE, GatewayState
from gateway.dataplane.listener import GuardedRunner
from gateway.errors import GatewayError

OK = "ok"
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("health_session", aiohttp.ClientSession)


class NotReady(GatewayError):
    """``/readyz`` when a check fails: 503, with every check's result so the failing one is visible in
    ``kubectl describe pod`` (the kubelet records the start of a failed probe's body)."""

    status = 503
    kind = "not-ready"
    title = "Not ready"

    def __init__(self, checks: dict[str, str]) -> None:
        failed = ", ".join(name for name, result in checks.items() if result != OK)
        super().__init__(f"The gateway is not ready: {failed}.")
        self.checks = checks

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}

    def extensions(self) -> dict[str, Any]:
        return {"checks": self.checks}


async def _bounded(check: Awaitable[str], seconds: float) -> str:
    try:
        return await asyncio.wait_for(check, seconds)
    except TimeoutError:
        return f"no answer within {seconds:g} s"


async def _store_answers(state: GatewayState) -> str:
    """A one-key read (the pending-escalation count, a Redis SCARD): cheap, and it fails exactly when the
    data path's store calls would."""
    try:
        await state.store.count_escalations("pending")
    except GatewayError as exc:  # every backend raises StoreUnavailable for its driver's errors
        return exc.title.lower()
    return OK


async def _agent_answers(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url, allow_redirects=False) as answer:
            return OK if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except aiohttp.ClientError as exc:
        return f"unreachable ({type(exc).__name__})"


async def readiness(state: GatewayState, session: aiohttp.ClientSession) -> dict[str, str]:
    """Each check's result, ``"ok"`` or why not; the store and the agent are asked concurrently."""
    settings = state.config.health
    checks = {"started": OK if state.ready else "starting or shutting down"}
    probes = {"store": _store_answers(state)}
    if settings.agent_url is not None:
        probes["agent"] = _agent_answers(session, settings.agent_url)
    results = await asyncio.gather(*(_bounded(probe, settings.check_timeout) for probe in probes.values()))
    checks.update(zip(probes, results, strict=True))
    return checks


def _json(document: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(document), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": OK})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    checks = await readiness(state, request.app[SESSION])
    if any(result != OK for result in checks.values()):
        raise NotReady(checks)
    return _json({"status": OK, "checks": checks, "contracts": len(state.contracts.table)})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATE].metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_health_app(state: GatewayState) -> web.Application:
    """The health application; its client session (for ``health.agent_url``) lives as long as the app."""

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=state.config.health.check_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[SESSION] = session
            yield

    app = web.Application(middlewares=[problem_middleware])
    app[STATE] = state
    app.cleanup_ctx.append(client_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health(state: GatewayState, unwind: contextlib.AsyncExitStack) -> web.AppRunner | None:
    """Bind the health listener when ``health.port`` is set; ``unwind`` closes it if start-up fails later."""
    settings: HealthSettings = state.config.health
    if settings.port is None:
        return None
    runner = GuardedRunner(build_health_app(state), head_timeout=state.config.timeouts.header, access_log=None)
    await runner.setup()
    unwind.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
    return runner
