"""The store interface: everything the gateway must remember lives behind this protocol.

Methods are coroutines so that a networked backend (Redis, for many sidecars) fits the same shape as the
embedded SQLite default. The data plane never awaits the store: it reads in-memory snapshots that the
registries rebuild after each change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import RouteSpec


@dataclass(frozen=True, slots=True)
class StoredContract:
    """One immutable version of a contract document as registered."""

    id: str
    version: int
    document: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class ContractHead:
    """Where a contract stands: its newest version and the one enforced (``None`` when deleted)."""

    id: str
    latest_version: int
    active_version: int | None


class Store(Protocol):
    async def list_routes(self) -> list[RouteSpec]: ...

    async def put_route(self, route: RouteSpec) -> None: ...

    async def delete_route(self, name: str) -> bool: ...

    async def add_contract_version(self, contract_id: str, document: Mapping[str, Any]) -> StoredContract:
        """Store ``document`` as version N+1 of ``contract_id`` (1 for a new id), atomically."""
        ...

    async def get_contract_version(self, contract_id: str, version: int) -> StoredContract | None: ...

    async def list_contract_versions(self, contract_id: str) -> list[StoredContract]: ...

    async def list_contract_heads(self) -> list[ContractHead]: ...

    async def set_active_version(self, contract_id: str, version: int | None) -> None: ...

    async def close(self) -> None: ...
