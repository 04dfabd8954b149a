"""The versioned contract registry and the immutable table the data plane reads.

The life cycle (register → version N+1, activate any version, deactivate) and the build-then-swap rule are
shared with policies in :mod:`gateway.control.versioning`; this module adds compiling validators, resolving ``$ref``
between contracts through their shared schemas, and the rule that one request is governed by one contract:
a contract whose route, method and path template overlap those of another contract in force is refused
(:class:`BindingConflict`, the admin API's 409), never shadowed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jsonschema_rs
import orjson
import referencing
from referencing.jsonschema import DRAFT202012

from gateway.contracts.document import ContractDocumentError, ContractSpec, parse_contract
from gateway.contracts.paths import PathTemplate
from gateway.contracts.validation import CompiledContract, compile_contract
from gateway.control.versioning import DocumentConflict, DocumentNotFound, VersionedRegistry
from gateway.store.base import Store

KIND = "contract"
log = logging.getLogger("agent_gateway.contracts")


ContractNotFound = DocumentNotFound


class SchemaResources:
    """Shared schemas (``schemas:`` entries with an ``$id``) that contracts may ``$ref`` across documents.

    The ``referencing`` registry is the source of truth (it is what Python ``jsonschema`` resolves with);
    the same resources are handed to ``jsonschema-rs`` so both engines resolve references identically.
    """

    def __init__(self, schemas: Iterable[Mapping[str, Any]] = ()) -> None:
        by_uri: dict[str, Any] = {}
        for schema in schemas:
            uri = schema["$id"]
            if by_uri.setdefault(uri, schema) != schema:
                raise DocumentConflict(
                    f"shared schema {uri!r} is published twice with different contents",
                    [{"pointer": "/schemas", "message": f"conflicting definitions of {uri}"}],
                )
        ordered = [(uri, by_uri[uri]) for uri in sorted(by_uri)]
        self.registry: referencing.Registry[Any] = referencing.Registry().with_resources(
            (uri, DRAFT202012.create_resource(schema)) for uri, schema in ordered
        )
        self.fingerprint = orjson.dumps(ordered, option=orjson.OPT_SORT_KEYS)
        try:
            self._rust = jsonschema_rs.Registry(ordered) if ordered else None
        except (ValueError, jsonschema_rs.ReferencingError) as exc:  # an ``$id`` that is no URI reference
            raise ContractDocumentError(
                f"a shared schema cannot be published: {exc}", [{"pointer": "/schemas", "message": str(exc)}]
            ) from exc

    @property
    def for_rust(self) -> jsonschema_rs.Registry | None:
        return self._rust


RpcKey = tuple[str, str | None]
"""A JSON-RPC method and, for MCP ``tools/call``, the tool."""


class ContractTable:
    """Immutable indexes ``(route, method) → [(path template, compiled contract)]``, most specific first: one
    for plain operations, one for JSON-RPC operations (``→ {(rpc method, tool): contract}`` per template)."""

    __slots__ = ("_contracts", "_index", "_rpc", "resources")

    def __init__(self, contracts: Iterable[CompiledContract] = ()) -> None:
        self.resources = SchemaResources()
        self._contracts = {c.id: c for c in contracts}
        index: dict[tuple[str, str], list[tuple[PathTemplate, CompiledContract]]] = {}
        rpc: dict[tuple[str, str], dict[str, tuple[PathTemplate, dict[RpcKey, CompiledContract]]]] = {}
        for contract in self._contracts.values():
            spec = contract.spec
            op, key = spec.operation, (spec.route, spec.operation.method)
            if spec.rpc is None:
                index.setdefault(key, []).append((PathTemplate(op.path), contract))
                continue
            _, by_method = rpc.setdefault(key, {}).setdefault(op.path, (PathTemplate(op.path), {}))
            by_method[(spec.rpc.method, spec.rpc.tool)] = contract
        for entries in index.values():
            entries.sort(key=lambda entry: entry[0].specificity)
        self._index = index
        self._rpc = {
            key: sorted(templates.values(), key=lambda entry: entry[0].specificity) for key, templates in rpc.items()
        }

    def find(self, route: str, method: str, path: str) -> CompiledContract | None:
        for template, contract in self._index.get((route, method), ()):
            if template.matches(path):
                return contract
        return None

    def binds_rpc(self, route: str, method: str, path: str) -> bool:
        """Whether JSON-RPC contracts bind this endpoint (the body must then be read to match one)."""
        return any(template.matches(path) for template, _ in self._rpc.get((route, method), ()))

    def find_rpc(
        self, route: str, method: str, path: str, rpc_method: str, tool: str | None
    ) -> CompiledContract | None:
        """The contract for a JSON-RPC call: the tool's own first, then the method's."""
        for template, by_method in self._rpc.get((route, method), ()):
            if template.matches(path):
                found = by_method.get((rpc_method, tool)) if tool is not None else None
                return found or by_method.get((rpc_method, None))
        return None

    def get(self, contract_id: str) -> CompiledContract | None:
        return self._contracts.get(contract_id)

    def __len__(self) -> int:
        return len(self._contracts)

    def __iter__(self) -> Iterator[CompiledContract]:
        return iter(self._contracts.values())


def _compile_error(spec: ContractSpec, exc: Exception) -> ContractDocumentError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ContractDocumentError(
        f"contract {spec.id!r} does not compile: {first_line}", [{"pointer": "", "message": first_line}]
    )


class BindingConflict(DocumentConflict):
    """A contract's operation overlaps one another contract already binds (see :meth:`PathTemplate.overlaps`)."""


Active = Mapping[str, tuple[ContractSpec, int]]


def _holder(spec: ContractSpec, version: int) -> str:
    return f"contract {spec.id!r} " + (f"version {version}" if version else "(in the same registration)")


def binding_conflicts(active: Active, current: Active) -> list[tuple[str, str, str]]:
    """``(claimant id, holder, binding)`` for every contract in ``active`` whose operation overlaps one held
    by a contract before it. Contracts already in force (``current``) hold first, then the rest in order."""
    incoming = [cid for cid, entry in active.items() if current.get(cid) != entry]
    order = [cid for cid in active if cid not in incoming] + incoming
    held: dict[tuple[str, str, RpcKey | None], list[tuple[PathTemplate, str]]] = {}
    found = []
    for cid in order:
        spec, _ = active[cid]
        op = spec.operation
        rpc = (spec.rpc.method, spec.rpc.tool) if spec.rpc is not None else None
        template, key = PathTemplate(op.path), (spec.route, op.method.upper(), rpc)
        clash = next((holder for other, holder in held.get(key, ()) if template.overlaps(other)), None)
        if clash is None:
            held.setdefault(key, []).append((template, _holder(spec, active[cid][1])))
        else:
            what = f" ({spec.rpc.name})" if spec.rpc is not None else ""
            found.append((cid, clash, f"{key[1]} {op.path}{what} on route {spec.route!r}"))
    return found


def _refuse_conflicts(active: Active, current: Active) -> None:
    conflicts = binding_conflicts(active, current)
    if conflicts:
        claimant, holder, binding = conflicts[0]
        raise BindingConflict(
            f"contract {claimant!r} binds {binding}, which {holder} already binds; deactivate it or change "
            "the operation (one request is governed by one contract)",
            [{"pointer": "/operation", "message": f"{cid!r}: {what} is bound by {by}"} for cid, by, what in conflicts],
        )


class ContractRegistry(VersionedRegistry[ContractSpec, ContractTable]):
    """Versions and activates contracts (see :mod:`gateway.control.versioning` for the life cycle); owns the
    :class:`ContractTable` the proxy reads, with validators compiled once per version and cached."""

    kind = KIND

    def __init__(self, store: Store) -> None:
        super().__init__(store, ContractTable())
        self._cache: dict[tuple[str, int], CompiledContract] = {}
        self._pending: dict[str, tuple[bytes, CompiledContract]] = {}
        """Compiled while checking a registration (version 0): reused once the store has numbered it."""
        self._resources = SchemaResources()

    def parse(self, document: Mapping[str, Any]) -> ContractSpec:
        return parse_contract(document)

    async def compiled(self, contract_id: str, version: int | None = None) -> CompiledContract:
        """The compiled form of a version (the active one by default), against today's shared schemas."""
        if version is None:
            active = self.table.get(contract_id)
            if active is None:
                raise ContractNotFound(contract_id)
            return active
        stored = await self.version(contract_id, version)
        return self._compile(parse_contract(stored.document), version, self._resources)

    def _compile(self, spec: ContractSpec, version: int, resources: SchemaResources) -> CompiledContract:
        cacheable = version > 0 and resources is self._resources
        cached = self._cache.get((spec.id, version)) if cacheable else None
        if cached is not None:
            return cached
        pending = self._pending.get(spec.id)
        if pending is not None and pending[1].spec is spec and pending[0] == resources.fingerprint:
            return dataclasses.replace(pending[1], version=version)
        try:
            compiled = compile_contract(spec, version, resources.for_rust, resources.registry)
        except (ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
            raise _compile_error(spec, exc) from exc
        if version == 0:
            self._pending[spec.id] = (resources.fingerprint, compiled)
        return compiled

    def build(self, active: Mapping[str, tuple[ContractSpec, int]]) -> ContractTable:
        """Refuse overlapping bindings, then compile every active contract against the shared schemas they
        publish; raise if any fails. Runs in a worker thread (see :mod:`gateway.control.versioning`)."""
        _refuse_conflicts(active, self._active)
        resources = SchemaResources(schema for spec, _ in active.values() for schema in spec.shared_schemas)
        if resources.fingerprint == self._resources.fingerprint:
            resources = self._resources
        table = ContractTable(self._compile(spec, v, resources) for spec, v in active.values())
        table.resources = resources
        return table

    def installed(self, table: ContractTable) -> None:
        """Reuse validators compiled against the same shared schemas; start afresh when those changed."""
        self._pending.clear()
        if table.resources is not self._resources:
            self._cache.clear()
            self._resources = table.resources
        self._cache.update({(c.id, c.version): c for c in table})

    async def settle(self, active: dict[str, tuple[ContractSpec, int]]) -> dict[str, tuple[ContractSpec, int]]:
        """A store that already holds overlapping contracts in force (written before bindings were checked, or
        by two gateways at once) does not stop the gateway: the contract registered first keeps the binding,
        each later one is deactivated in the store (its versions stay readable) and logged."""
        for claimant, holder, binding in binding_conflicts(active, {}):
            log.warning("contract %r binds %s, which %s already binds: deactivated", claimant, binding, holder)
            await self._store.set_active(self.kind, claimant, None)
            del active[claimant]
        return active


__all__ = ["BindingConflict", "ContractNotFound", "ContractRegistry", "ContractTable", "SchemaResources"]
