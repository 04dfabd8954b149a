"""The egress listener: the agent's *outgoing* calls, through the same chain of stages with the identity fixed.

Why: on the data port the source of a handoff is whatever ``X-Agent-Name`` the caller sends (``unknown`` when
it sends none), so an agent whose code sets no header shows up as ``unknown``, and one that sets a wrong one is
believed. The agent's calls to its peers leave the pod without passing its own sidecar at all. Pointing the
agent's peer URLs at ``http://localhost:<egress.port>/<route>/...`` (configuration, not code) sends them through
this listener, which routes with the same route table and enforces the same contracts and policies — a request
that violates a peer's contract is refused here, before it leaves the pod.

Identity, decided here and nowhere else, then handed to the unchanged chain as the request's own headers:

- **Source**: ``egress.agent`` from the settings (in Kubernetes the Downward API, e.g.
  ``AGENT_GATEWAY_EGRESS__AGENT`` from ``metadata.labels['app']``). Every ``X-Agent-Name`` the caller sent is
  replaced by it, so the audit record, the SERVER span and the request the peer receives all name this agent.
  Whoever can reach the port speaks as the agent: it binds loopback by default and a warning is logged otherwise.
- **Run id**: the ``run.id`` member of the W3C ``baggage`` header (the member the gateway already adds to every
  request it forwards, so an agent with OpenTelemetry instrumentation carries it from the request it is serving
  to the calls it makes, without code changes), else ``X-Run-Id``, else a new one (the chain's ``Observe``).
  Baggage wins over ``X-Run-Id`` here because it travels with the agent's current context, where a header may
  be a client's default left over from another run.

The chain reads the identity from the request, so the listener hands it a clone of the request with those two
headers rewritten and prepares a buffered answer itself, against that clone: aiohttp would prepare it against the
original request, whose state does not carry the exchange, and the handoff's headers would not be stamped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Mapping

from aiohttp import web
from multidict import CIMultiDict
from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from gateway.config import GatewayConfig
from gateway.control.state import GatewayState
from gateway.dataplane.front import stamp
from gateway.dataplane.listener import serve_data_app
from gateway.dataplane.proxy import Proxy
from gateway.dataplane.recover import escalation_outcome
from gateway.errors import BadRequest, problem_response
from gateway.headers import AGENT, RUN
from gateway.observability.telemetry import RUN_BAGGAGE
from gateway.policies.escalation import OUTCOME_PATH

log = logging.getLogger("agent_gateway.egress")

_BAGGAGE = W3CBaggagePropagator()


def baggage_run_id(headers: Mapping[str, str]) -> str | None:
    """The ``run.id`` member of the W3C ``baggage`` header, decoded as the OTel propagator decodes it (its rules:
    the first header only, size limits, ``+`` as a space). The propagator costs ≈15 µs a call (measured), so it
    only runs on a header that can hold the member."""
    if RUN_BAGGAGE not in headers.get("baggage", ""):
        return None
    value = baggage.get_baggage(RUN_BAGGAGE, _BAGGAGE.extract(headers))
    return str(value) if value else None


class EgressFront:
    """The egress listener's handler: the request with this pod's identity, through the data plane's chain."""

    def __init__(self, proxy: Proxy, agent: str) -> None:
        self._proxy = proxy
        self._agent = agent

    def identified(self, request: web.Request) -> CIMultiDict[str]:
        """The request's headers with the source fixed to this pod's agent and the run id taken from baggage."""
        headers = CIMultiDict(request.headers)
        headers[AGENT] = self._agent  # replaces every value the caller sent
        run_id = baggage_run_id(request.headers)
        if run_id is not None:
            headers[RUN] = run_id
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            identified = request.clone(headers=self.identified(request))
        except UnicodeEncodeError:  # clone re-encodes headers as UTF-8: a byte the parser let through fails there
            refusal = BadRequest("A header value is not valid UTF-8; the egress listener cannot forward it intact.")
            return problem_response(refusal, None)
        response = await self._proxy.handle(identified)
        if not response.prepared:  # a streamed answer was prepared by the chain, against the same clone
            await response.prepare(identified)
        return response


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def serve_egress(state: GatewayState, proxy: Proxy, unwind: contextlib.AsyncExitStack) -> web.AppRunner | None:
    """Bind the egress listener when ``egress.port`` is set; ``unwind`` closes it if start-up fails later.

    It shares the data plane's proxy (route table, contracts, policies, breakers, concurrency limits, client
    session), so it must close before the data plane does (the data plane's cleanup closes the session)."""
    config: GatewayConfig = state.config
    settings = config.egress
    if settings.port is None or settings.agent is None:
        return None
    if not _loopback(settings.host):
        log.warning("egress listener on %s: anyone who reaches it is recorded as agent %r", settings.host,
                    settings.agent)  # fmt: skip
    app = web.Application(client_max_size=config.limits.max_body_bytes)
    app.on_response_prepare.append(stamp)
    app.router.add_get(OUTCOME_PATH + "{id}", escalation_outcome(state.escalations))  # polled where it was asked
    app.router.add_route("*", "/{tail:.*}", EgressFront(proxy, settings.agent).handle)
    runner = await serve_data_app(app, config, settings.host, settings.port, unwind)
    log.info("egress listener on %s:%s for agent %r", settings.host, settings.port, settings.agent)
    return runner
