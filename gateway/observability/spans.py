"""What the gateway's spans say, per the OpenTelemetry HTTP semantic conventions (stable ``http.*``/``url.*``).

One SERVER span per handoff, named ``{method} {http.route}`` where ``http.route`` is the full matched template
(route prefix + the contract's path template, ``/writer/draft``, ``/tools/{name}``; ``/writer/*`` when no
contract governs the operation), and one CLIENT span per attempt to call the agent. Every function here returns
at once for a span that is not recording (sampler ``ALWAYS_OFF``, unsampled parent): the attribute dictionaries,
the URL redaction and the route template are only built for spans someone will read.

``error.type`` on the SERVER span is the problem type of a refusal (its last path segment: the verdict for a
refusal that reports one, ``request_invalid``, ``breaker_open``…, else ``no-route``, ``payload-too-large``…),
the status code as a string for a 5xx the agent answered and the gateway relayed, and the exception's class name
when the answer broke off after its status line was sent. The span status is ``ERROR`` for a 5xx or a broken
answer only: a 4xx is the caller's problem, not the server's (semconv).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from opentelemetry.trace import Span, StatusCode
from opentelemetry.util.types import AttributeValue
from yarl import URL

from gateway.config import RouteSpec
from gateway.contracts.validation import CompiledContract
from gateway.observability import semconv as sc
from gateway.redaction import redacted_url

KNOWN_METHODS: Final = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE")
)
OTHER_METHOD: Final = "_OTHER"
_PROTOCOLS: Final = {(1, 1): "1.1", (1, 0): "1.0", (2, 0): "2", (3, 0): "3"}


def method_attributes(method: str) -> dict[str, AttributeValue]:
    """``http.request.method``, with ``_OTHER`` (and the original kept aside) for a method outside the known set,
    so a client inventing methods cannot inflate the attribute's cardinality."""
    if method in KNOWN_METHODS:
        return {sc.HTTP_REQUEST_METHOD: method}
    return {sc.HTTP_REQUEST_METHOD: OTHER_METHOD, sc.HTTP_REQUEST_METHOD_ORIGINAL: method}


def span_method(method: str) -> str:
    """The method as a span name shows it (semconv: ``HTTP`` for a method outside the known set)."""
    return method if method in KNOWN_METHODS else "HTTP"


def received_path(request: web.Request) -> str:
    """``url.path``: the path as the caller sent it (before the gateway canonicalised it and stripped the route
    prefix), so the span and the access line show what the caller asked for."""
    return request.raw_path.partition("?")[0]


def begin_server_span(span: Span, request: web.Request, run_id: str, source: str) -> None:
    """What is known as a request arrives: method, path as received, scheme, HTTP version, run and caller."""
    if not span.is_recording():
        return
    version = request.version
    attributes = method_attributes(request.method)
    attributes.update({
        sc.URL_PATH: received_path(request), sc.URL_SCHEME: request.scheme,
        sc.NETWORK_PROTOCOL_VERSION: _PROTOCOLS.get((version.major, version.minor), f"{version.major}.{version.minor}"),
        sc.RUN_ID: run_id, sc.AGENT_SOURCE: source,
    })  # fmt: skip
    span.set_attributes(attributes)


def http_route(route: RouteSpec, contract: CompiledContract | None) -> str:
    """The full matched template: route prefix + the contract's path template, or ``<prefix>/*`` without one."""
    prefix = route.effective_prefix.rstrip("/")
    if contract is None:
        return f"{prefix}/*"
    return prefix + (contract.spec.operation.path or "/")


def name_server_span(span: Span, method: str, route: RouteSpec, contract: CompiledContract | None) -> None:
    """Once the route and the contract are known: ``{method} {http.route}``, and what the handoff is bound by."""
    if not span.is_recording():
        return
    template = http_route(route, contract)
    span.update_name(f"{span_method(method)} {template}")
    attributes: dict[str, AttributeValue] = {sc.HTTP_ROUTE: template, sc.ROUTE: route.name,
                                             sc.GEN_AI_AGENT_NAME: route.name}  # fmt: skip
    if contract is not None:
        attributes |= {sc.CONTRACT_ID: contract.id, sc.CONTRACT_VERSION: contract.version}
    span.set_attributes(attributes)


def name_rpc_span(span: Span, contract: CompiledContract) -> None:
    """A single JSON-RPC call bound by its own contract: named as the MCP conventions name a call
    (``{method} {tool}``: ``tools/call add``, ``SendMessage``), with ``rpc.*`` and, for an MCP tool,
    ``gen_ai.tool.name``; ``http.route`` keeps the HTTP template the call came in on."""
    rpc = contract.spec.rpc
    if rpc is None or not span.is_recording():
        return
    span.update_name(rpc.name)
    attributes: dict[str, AttributeValue] = {
        sc.RPC_SYSTEM: "jsonrpc",
        sc.RPC_METHOD: rpc.method,
        sc.CONTRACT_ID: contract.id,
        sc.CONTRACT_VERSION: contract.version,
    }
    if rpc.tool is not None:
        attributes[sc.GEN_AI_TOOL_NAME] = rpc.tool
    span.set_attributes(attributes)  # fmt: skip


def end_server_span(
    span: Span, status: int, verdict: str, violations: int, refusal: str | None, failure: BaseException | None
) -> None:
    """The outcome: status code, verdict, violations, and ``error.type`` as the module docstring says."""
    if not span.is_recording():
        return
    attributes: dict[str, AttributeValue] = {sc.CONTRACT_VERDICT: verdict}
    if status:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = status
    if violations:
        attributes[sc.CONTRACT_VIOLATIONS] = violations
    error = type(failure).__qualname__ if failure is not None else refusal
    if error is None and status >= 500:
        error = str(status)
    if error is not None:
        attributes[sc.ERROR_TYPE] = error
    span.set_attributes(attributes)
    if failure is not None or status >= 500:
        span.set_status(StatusCode.ERROR, error)


def client_attributes(
    method: str, url: URL, agent: str, run_id: str, attempt: int, breaker_state: str | None
) -> dict[str, AttributeValue]:
    """A CLIENT span's attributes for one attempt; ``http.request.resend_count`` only on a retry (semconv)."""
    attributes = method_attributes(method)
    attributes.update({
        sc.SERVER_ADDRESS: url.host or "", sc.URL_FULL: redacted_url(url), sc.GEN_AI_AGENT_NAME: agent,
        sc.RUN_ID: run_id,
    })  # fmt: skip
    if url.port is not None:
        attributes[sc.SERVER_PORT] = url.port
    if attempt > 1:
        attributes[sc.HTTP_REQUEST_RESEND_COUNT] = attempt - 1
    if breaker_state is not None:
        attributes[sc.BREAKER_STATE] = breaker_state
    return attributes


def end_client_span(span: Span, status: int | None, failure: BaseException | None, error_type: str | None) -> None:
    """An attempt's end: the agent's status; ``error.type`` is the transport failure's class name, the verdict
    that refused the answer (``response_invalid``), or the status code of a 4xx/5xx (errors for a client)."""
    if status is not None:
        span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
    if error_type is None and failure is not None:
        error_type = type(failure).__qualname__
    if error_type is None and status is not None and status >= 400:
        error_type = str(status)
    if error_type is not None:
        span.set_attribute(sc.ERROR_TYPE, error_type)
        span.set_status(StatusCode.ERROR, error_type)
    if failure is not None:
        span.record_exception(failure)
    span.end()
