"""Routes: which upstream agent a request goes to, and the in-memory table the data plane reads.

Matching: the longest prefix that ends on a segment boundary wins (``/plan`` matches ``/plan`` and
``/plan/x`` but not ``/planner``); a request no prefix claims goes to the default route, if any. The prefix
is stripped before forwarding; the default route forwards the path unchanged (the sidecar case: every
request on the gateway port goes to ``localhost:<agent port>``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from gateway.config import RouteSpec
from gateway.store.base import Store


class RouteTable:
    """Immutable snapshot of the routes, swapped whole on every change."""

    __slots__ = ("_by_name", "_default", "_prefixed")

    def __init__(self, routes: Iterable[RouteSpec] = ()) -> None:
        self._by_name = {r.name: r for r in routes}
        self._prefixed = sorted(
            ((r.effective_prefix, r) for r in self._by_name.values() if not r.default),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self._default = next((r for r in self._by_name.values() if r.default), None)

    def match(self, path: str) -> tuple[RouteSpec, str] | None:
        """The route for ``path`` and the path to forward (prefix stripped), or ``None``."""
        for prefix, route in self._prefixed:
            if prefix == "/":
                return route, path
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return route, path[len(prefix) :] or "/"
        return (self._default, path) if self._default is not None else None

    def get(self, name: str) -> RouteSpec | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[RouteSpec]:
        return iter(self._by_name.values())


class RouteRegistry:
    """Persists routes and keeps the :class:`RouteTable` current; changes apply without a restart."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self.table = RouteTable()

    async def load(self, seed: Iterable[RouteSpec] = ()) -> None:
        """Load stored routes; ``seed`` (from the config file) overrides stored routes of the same name."""
        async with self._lock:
            for route in seed:
                await self._store.put_route(route)
            self.table = RouteTable(await self._store.list_routes())

    async def put(self, route: RouteSpec) -> None:
        async with self._lock:
            others = [r for r in self.table if r.name != route.name]
            if route.default and any(r.default for r in others):
                raise ValueError("another route is already the default")
            await self._store.put_route(route)
            self.table = RouteTable([*others, route])

    async def delete(self, name: str) -> bool:
        async with self._lock:
            removed = await self._store.delete_route(name)
            self.table = RouteTable(r for r in self.table if r.name != name)
            return removed
