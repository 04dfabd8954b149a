"""The versioned policy registry and the table the data path asks "which policy governs this request?"."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.control.versioning import DocumentConflict, VersionedRegistry
from gateway.policies.document import DEFAULT_POLICY, PolicySpec, parse_policy
from gateway.store.base import Store

log = logging.getLogger("agent_gateway.policies")


class PolicyTable:
    """Policies by what they attach to. A contract's policy wins over its route's; else the default."""

    __slots__ = ("_by_contract", "_by_route")

    def __init__(self, policies: Iterable[PolicySpec] = ()) -> None:
        self._by_route: dict[str, PolicySpec] = {}
        self._by_contract: dict[str, PolicySpec] = {}
        for policy in policies:
            slot, key = (self._by_contract, policy.contract) if policy.contract else (self._by_route, policy.route)
            assert key is not None
            if key in slot:
                target = f"contract {key!r}" if policy.contract else f"route {key!r}"
                raise DocumentConflict(
                    f"{target} already has policy {slot[key].id!r}; one policy per target",
                    [{"pointer": "/attach", "message": f"{target} is taken by {slot[key].id!r}"}],
                )
            slot[key] = policy

    def lookup(self, route: str, contract: str | None) -> PolicySpec:
        if contract is not None and contract in self._by_contract:
            return self._by_contract[contract]
        return self._by_route.get(route, DEFAULT_POLICY)


class PolicyRegistry(VersionedRegistry[PolicySpec, PolicyTable]):
    kind = "policy"

    def __init__(self, store: Store) -> None:
        super().__init__(store, PolicyTable())

    def parse(self, document: Mapping[str, Any]) -> PolicySpec:
        return parse_policy(document)

    def build(self, active: Mapping[str, tuple[PolicySpec, int]]) -> PolicyTable:
        return PolicyTable(spec for spec, _ in active.values())

    async def settle(self, active: dict[str, tuple[PolicySpec, int]]) -> dict[str, tuple[PolicySpec, int]]:
        """Two policies in force on one target (a store written by an older gateway, or by two at once) do not
        stop the gateway: the one registered first keeps the target, each later one is deactivated and logged."""
        holders: dict[tuple[str, str | None], str] = {}
        for policy_id, (spec, _) in list(active.items()):
            target = ("contract", spec.contract) if spec.contract else ("route", spec.route)
            if target in holders:
                log.warning("policy %r attaches to %s %r, held by %r: deactivated", policy_id, *target, holders[target])
                await self._store.set_active(self.kind, policy_id, None)
                del active[policy_id]
            else:
                holders[target] = policy_id
        return active
