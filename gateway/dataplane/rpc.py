"""JSON-RPC endpoints (MCP, A2A, plain JSON-RPC 2.0): match each call in the body to the contract of its method.

MCP and A2A send every call as ``POST /mcp`` (or ``/``) with the operation in the body, so a contract binds
``operation`` (method + path) *and* ``jsonrpc.method`` (and, for MCP ``tools/call``, ``jsonrpc.tool``). When such
contracts bind the endpoint, the body is read (``ReadBody``) and parsed once here; each request or notification
is paired with its contract (the tool's own first, then the method's). A single call's contract becomes the
exchange's contract, so its policy, span name (``tools/call add``), audit step and metrics follow it. Which
protocol's conventions a refusal follows (the *dialect*) is read from the call, see :func:`dialect_of`.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

from gateway.contracts.registry import ContractRegistry
from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange, RpcCall
from gateway.dataplane.target import contract_path
from gateway.observability.spans import name_rpc_span
from gateway.policies.registry import PolicyRegistry
from gateway.protocols.jsonrpc import Dialect, Kind, classify

#: A2A 1.x JSON-RPC methods, and their 0.3 spellings.
A2A_METHODS = frozenset(
    {
        "SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask",
        "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig", "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
        "message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe",
    }
)  # fmt: skip
MCP_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version", "Mcp-Method")


def dialect_of(method: str | None, headers: Mapping[str, str]) -> Dialect:
    """MCP when the caller sends MCP's own headers, A2A for A2A's method names, else plain JSON-RPC."""
    if any(name in headers for name in MCP_HEADERS):
        return Dialect.MCP
    if method in A2A_METHODS:
        return Dialect.A2A
    return Dialect.JSONRPC


class MatchRpc:
    def __init__(self, contracts: ContractRegistry, policies: PolicyRegistry) -> None:
        self._contracts = contracts
        self._policies = policies

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        if exchange.rpc_bound and exchange.request_body:
            self._match(exchange)
        return await call_next(exchange)

    def _match(self, exchange: Exchange) -> None:
        assert exchange.request_body is not None
        assert exchange.route is not None
        try:
            envelope = classify(orjson.loads(exchange.request_body))
        except orjson.JSONDecodeError:
            return  # not JSON-RPC: the route's plain contract (if any) judges it
        if not envelope.is_jsonrpc:
            return
        request, route = exchange.request, exchange.route
        table, path = self._contracts.table, contract_path(exchange.path)
        calls = tuple(
            RpcCall(
                i if envelope.batch else None, message,
                table.find_rpc(route.name, request.method, path, message.method, message.tool),
            )
            for i, message in enumerate(envelope.messages)
            if message.kind in (Kind.REQUEST, Kind.NOTIFICATION) and message.method is not None
        )  # fmt: skip
        exchange.rpc, exchange.rpc_calls = envelope, calls
        exchange.rpc_dialect = dialect_of(calls[0].message.method if calls else None, request.headers)
        if envelope.batch or len(calls) != 1 or calls[0].contract is None:
            return
        contract = exchange.contract = calls[0].contract
        exchange.policy = self._policies.table.lookup(route.name, contract.id)
        name_rpc_span(exchange.span, contract)
