"""Span attribute names, in one place: the OpenTelemetry semantic conventions and the gateway's own namespace.

Standard names come from the ``opentelemetry-semantic-conventions`` package the SDK itself pins (stable HTTP,
URL, server, network and error attributes), so a spelling can never drift from what trace backends index.
``gen_ai.*`` names are still *incubating* upstream; they are spelled here rather than imported from the
package's ``_incubating`` module, which may move between releases. Everything the conventions have no name for
lives under ``agent_gateway.*`` (a namespace of our own, as the conventions ask of custom attributes).
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME, SERVICE_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_PATH, URL_SCHEME

__all__ = [
    "AGENT_SOURCE",
    "BREAKER_STATE",
    "CONTRACT_ID",
    "CONTRACT_VERDICT",
    "CONTRACT_VERSION",
    "CONTRACT_VIOLATIONS",
    "ERROR_TYPE",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_TOOL_NAME",
    "HTTP_REQUEST_METHOD",
    "HTTP_REQUEST_METHOD_ORIGINAL",
    "HTTP_REQUEST_RESEND_COUNT",
    "HTTP_RESPONSE_STATUS_CODE",
    "HTTP_ROUTE",
    "NETWORK_PROTOCOL_VERSION",
    "ROUTE",
    "RPC_METHOD",
    "RPC_SYSTEM",
    "RUN_ID",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SERVICE_NAME",
    "SERVICE_VERSION",
    "URL_FULL",
    "URL_PATH",
    "URL_SCHEME",
]

GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
"""The agent a span calls: the route's name (the agent behind it), on the SERVER and every CLIENT span."""
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
"""The MCP tool of a ``tools/call`` governed by a tool contract."""
RPC_SYSTEM: Final = "rpc.system"
RPC_METHOD: Final = "rpc.method"

_NS: Final = "agent_gateway."
ROUTE: Final = _NS + "route"
"""The gateway route that matched (its name; ``http.route`` holds the path template)."""
AGENT_SOURCE: Final = _NS + "agent.source"
"""The calling agent, as it named itself in ``X-Agent-Name`` (``unknown`` when it did not)."""
RUN_ID: Final = _NS + "run.id"
CONTRACT_ID: Final = _NS + "contract.id"
CONTRACT_VERSION: Final = _NS + "contract.version"
CONTRACT_VERDICT: Final = _NS + "contract.verdict"
"""The verdict, spelled as in :mod:`gateway.outcomes` (``valid``, ``request_invalid``, …)."""
CONTRACT_VIOLATIONS: Final = _NS + "contract.violations"
"""How many violations the payload had (exact up to ``limits.max_violations``)."""
BREAKER_STATE: Final = _NS + "breaker.state"
