"""Where a request goes and whether it may: route, admit, read the body.

- :class:`Route`: the header budget, the canonical request target (``target.py``), the route, the contract in
  force for the operation, the policy for both, and the checkpoint key — one snapshot of each table per request.
- :class:`Admit`: the route's concurrency limit (503 + ``Retry-After`` when full); counts requests in flight.
- :class:`ReadBody`: buffers the body when a contract, a possible retry or a checkpoint needs it (with the body
  size limit and the client idle timeout); otherwise leaves it to be streamed to the agent.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config import Limits, Timeouts
from gateway.contracts.registry import ContractRegistry
from gateway.control.routes import RouteRegistry
from gateway.dataplane.chain import Next
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.target import canonical_target, contract_path
from gateway.dataplane.transport import read_request_body
from gateway.errors import BadRequestTarget, HeadersTooLarge, NoRoute, PayloadTooLarge, RouteOverloaded
from gateway.observability.spans import name_server_span
from gateway.policies.checkpoint import checkpoint_key
from gateway.policies.registry import PolicyRegistry


class Route:
    def __init__(
        self, routes: RouteRegistry, contracts: ContractRegistry, policies: PolicyRegistry, limits: Limits
    ) -> None:
        self._routes = routes
        self._contracts = contracts
        self._policies = policies
        self._max_header_bytes = limits.max_header_bytes

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        request = exchange.request
        self._check_head(request)
        target = canonical_target(request.raw_path)
        exchange.query = target.query
        matched = self._routes.table.match(target.path)
        if matched is None:
            raise NoRoute(target.path)
        route, exchange.path = matched
        if target.has_escaped_slash and route.escaped_slashes == "reject":
            raise BadRequestTarget(f"Route {route.name!r} refuses an encoded '/' or '\\' inside a path segment.")
        exchange.route = route
        table, matched_path = self._contracts.table, contract_path(exchange.path)
        contract = exchange.contract = table.find(route.name, request.method, matched_path)
        exchange.rpc_bound = table.binds_rpc(route.name, request.method, matched_path)
        exchange.policy = policy = self._policies.table.lookup(route.name, contract.id if contract else None)
        exchange.checkpoint_key = checkpoint_key(
            route.name, request.method, exchange.path, request.headers, policy.checkpoint
        )
        name_server_span(exchange.span, request.method, route, contract)
        return await call_next(exchange)

    def _check_head(self, request: web.Request) -> None:
        """The header block within ``limits.max_header_bytes`` (the parser bounds each line, not the sum)."""
        size = len(request.raw_path) + sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
        if size > self._max_header_bytes:
            raise HeadersTooLarge(f"The request head is {size} bytes; the limit is {self._max_header_bytes}.")


class Admit:
    def __init__(self, limits: Limits) -> None:
        self._default_limit = limits.max_concurrency_per_route
        self._in_flight: dict[str, int] = {}

    def in_flight(self, route: str) -> int:
        return self._in_flight.get(route, 0)

    def in_flight_by_route(self) -> dict[str, int]:
        return dict(self._in_flight)

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        route = exchange.route
        assert route is not None
        limit = route.max_concurrency or self._default_limit
        in_flight = self._in_flight.get(route.name, 0)
        if in_flight >= limit:
            raise RouteOverloaded(route.name, limit)
        self._in_flight[route.name] = in_flight + 1
        try:
            return await call_next(exchange)
        finally:
            self._in_flight[route.name] -= 1


class ReadBody:
    def __init__(self, limits: Limits, timeouts: Timeouts) -> None:
        self._max_body_bytes = limits.max_body_bytes
        self._client_idle = timeouts.client_idle

    async def __call__(self, exchange: Exchange, call_next: Next) -> web.StreamResponse:
        request, contract = exchange.request, exchange.contract
        length = request.content_length
        if length is not None and length > self._max_body_bytes:
            raise PayloadTooLarge(self._max_body_bytes)
        needed = (
            exchange.rpc_bound
            or exchange.checkpoint_key is not None
            or exchange.policy.retry is not None
            or (contract is not None and contract.buffers_request)
        )
        if needed and request.body_exists:
            exchange.request_body = await read_request_body(request, self._max_body_bytes, self._client_idle)
        return await call_next(exchange)
