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
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import jsonschema_rs
import orjson
import referencing
from referencing.jsonschema import DRAFT202012

from gateway.contracts.bindings import Bindings, RpcKey, describe
from gateway.contracts.checked import CheckedDigests, content_digest
from gateway.contracts.document import ContractDocumentError, ContractSpec, parse_contract
from gateway.contracts.matcher import TemplateIndex
from gateway.contracts.paths import PathTemplate, path_template, unmatchable
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


class ContractTable:
    """Immutable indexes ``(route, method) → path templates → contracts``: one for plain operations, one for
    JSON-RPC operations (a template there names the contracts ``{(rpc method, tool): contract}`` on that path).

    Matching is :class:`~gateway.contracts.matcher.TemplateIndex`'s, with the precedence the linear scan had:
    most literal segments, then most segments, then the contract in force first. :meth:`revised` makes the table
    for a change from this one, copying only what the change touches, so registering the 5,000th contract costs
    what the 100th did. ``resources`` and ``bindings`` are the registry's bookkeeping for the contracts in this
    table (the shared schemas they were compiled against, who holds which binding), swapped in with it."""

    __slots__ = ("_contracts", "_index", "_next", "_order", "_rpc", "_rpc_methods", "bindings", "resources")

    def __init__(self, contracts: Iterable[CompiledContract] = ()) -> None:
        self.resources = SchemaResources()
        self.bindings = Bindings()
        self._contracts: dict[str, CompiledContract] = {}
        self._order: dict[str, int] = {}
        """Each contract's place in the order contracts came into force: the last tie-break of precedence."""
        self._next = 0
        self._index: dict[tuple[str, str], TemplateIndex[CompiledContract]] = {}
        self._rpc: dict[tuple[str, str], TemplateIndex[CompiledContract]] = {}
        self._rpc_methods: dict[tuple[str, str, str], dict[RpcKey, CompiledContract]] = {}
        self._apply(list(contracts), [])

    def revised(self, upserts: Iterable[CompiledContract], removed: Iterable[str]) -> ContractTable:
        """A new table with ``upserts`` in force (an id already here is replaced, keeping its place) and the ids
        in ``removed`` out; this one is left as it was (requests that read it finish with it)."""
        table = ContractTable()
        table.resources, table.bindings, table._next = self.resources, self.bindings, self._next
        table._contracts, table._order = dict(self._contracts), dict(self._order)
        table._index, table._rpc, table._rpc_methods = dict(self._index), dict(self._rpc), dict(self._rpc_methods)
        table._apply(list(upserts), list(removed))
        return table

    def _apply(self, upserts: list[CompiledContract], removed: list[str]) -> None:
        """Change this (new, unshared) table in place; every index it shares with another is copied first."""
        changes: dict[tuple[bool, str, str], tuple[list[Any], list[Any]]] = {}
        copied: set[tuple[str, str, str]] = set()
        for doc_id in [*removed, *(c.id for c in upserts)]:
            old = self._contracts.get(doc_id)
            if old is not None:
                changes.setdefault(_index_key(old.spec), ([], []))[1].append((_template(old), self._order[doc_id]))
                if old.spec.rpc is not None and self._methods(old.spec, copied).get(_rpc_key(old.spec)) is old:
                    del self._methods(old.spec, copied)[_rpc_key(old.spec)]
        for doc_id in removed:
            self._contracts.pop(doc_id, None)
            self._order.pop(doc_id, None)
        for contract in upserts:
            if contract.id not in self._order:
                self._order[contract.id], self._next = self._next, self._next + 1
            self._contracts[contract.id] = contract
            key = _index_key(contract.spec)
            changes.setdefault(key, ([], []))[0].append((_template(contract), self._order[contract.id], contract))
            if contract.spec.rpc is not None:
                self._methods(contract.spec, copied)[_rpc_key(contract.spec)] = contract
        for (rpc, route, method), (added, gone) in changes.items():
            indexes = self._rpc if rpc else self._index
            indexes[(route, method)] = indexes.get((route, method), TemplateIndex()).changed(added, gone)

    def _methods(self, spec: ContractSpec, copied: set[tuple[str, str, str]]) -> dict[RpcKey, CompiledContract]:
        key = (spec.route, spec.operation.method, spec.operation.path)
        if key not in copied:
            copied.add(key)
            self._rpc_methods[key] = dict(self._rpc_methods.get(key, {}))
        return self._rpc_methods[key]

    def find(self, route: str, method: str, path: str) -> CompiledContract | None:
        index = self._index.get((route, method))
        found = index.best(path) if index is not None else None
        return found[1] if found is not None else None

    def binds_rpc(self, route: str, method: str, path: str) -> bool:
        """Whether JSON-RPC contracts bind this endpoint (the body must then be read to match one)."""
        index = self._rpc.get((route, method))
        return index is not None and index.best(path) is not None

    def find_rpc(
        self, route: str, method: str, path: str, rpc_method: str, tool: str | None
    ) -> CompiledContract | None:
        """The contract for a JSON-RPC call on the template that wins for ``path``: the tool's own first, then
        the method's."""
        index = self._rpc.get((route, method))
        found = index.best(path) if index is not None else None
        if found is None:
            return None
        by_method = self._rpc_methods[(route, method, found[1].spec.operation.path)]
        return (by_method.get((rpc_method, tool)) if tool is not None else None) or by_method.get((rpc_method, None))

    def get(self, contract_id: str) -> CompiledContract | None:
        return self._contracts.get(contract_id)

    def __len__(self) -> int:
        return len(self._contracts)

    def __iter__(self) -> Iterator[CompiledContract]:
        return iter(self._contracts.values())


def _index_key(spec: ContractSpec) -> tuple[bool, str, str]:
    return spec.rpc is not None, spec.route, spec.operation.method


def _template(contract: CompiledContract) -> PathTemplate:
    return path_template(contract.spec.operation.path)


def _rpc_key(spec: ContractSpec) -> RpcKey:
    assert spec.rpc is not None
    return spec.rpc.method, spec.rpc.tool


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


def _refuse(conflicts: list[tuple[ContractSpec, str]], active: Active) -> None:
    if conflicts:
        named = [(claimant, _holder(*active[holder])) for claimant, holder in conflicts]
        claimant, holder = named[0]
        raise BindingConflict(
            f"contract {claimant.id!r} binds {describe(claimant)}, which {holder} already binds; deactivate it or "
            "change the operation (one request is governed by one contract)",
            [{"pointer": "/operation", "message": f"{c.id!r}: {describe(c)} is bound by {by}"} for c, by in named],
        )


class ContractRegistry(VersionedRegistry[ContractSpec, ContractTable]):
    """Versions and activates contracts (see :mod:`gateway.control.versioning` for the life cycle); owns the
    :class:`ContractTable` the proxy reads. A change costs what it changes: only the documents it adds or
    replaces are checked against the meta-schema (once per content: :class:`CheckedDigests`) and compiled
    (once: a registration's pre-check compiles them, the table built after storing reuses those), and the new
    table is :meth:`ContractTable.revised` from the one in force."""

    kind = KIND

    def __init__(self, store: Store) -> None:
        super().__init__(store, ContractTable())
        self._drafts: dict[str, tuple[bytes, CompiledContract]] = {}
        """Compiled while checking a registration (version 0): reused once the store has numbered it."""
        self._checked = CheckedDigests()

    def parse(self, document: Mapping[str, Any]) -> ContractSpec:
        digest = content_digest(document)
        if digest in self._checked:
            return parse_contract(document, checked=True)
        spec = parse_contract(document)
        self._checked.add(digest)
        return spec

    def precheck(self, active: Active, changed: Collection[str]) -> None:
        """A registration's checks: overlapping bindings (409) first, then a template no request path can match
        (:func:`~gateway.contracts.paths.unmatchable`, 400): such a contract would be in force and never
        enforced. Only new documents: a stored one in force keeps loading (it matches nothing, as it did)."""
        super().precheck(active, changed)
        for doc_id in changed:
            spec = active[doc_id][0]
            reason = unmatchable(spec.operation.path)
            if reason is not None:
                message = f"contract {spec.id!r}: no request path can match {spec.operation.path!r}"
                raise ContractDocumentError(message, [{"pointer": "/operation/path", "message": reason}])

    def parse_stored(self, document: Mapping[str, Any]) -> ContractSpec:
        """A stored document was checked when it was registered: only its typed form is made (and compiled)."""
        return parse_contract(document, checked=True)

    async def compiled(self, contract_id: str, version: int | None = None) -> CompiledContract:
        """The compiled form of a version (the active one by default), against today's shared schemas."""
        if version is None:
            active = self.table.get(contract_id)
            if active is None:
                raise ContractNotFound(contract_id)
            return active
        stored = await self.version(contract_id, version)
        return self._compile(self.parse_stored(stored.document), version, self.table.resources)

    def _compile(self, spec: ContractSpec, version: int, resources: SchemaResources) -> CompiledContract:
        current = self.table.get(spec.id)
        if current is not None and version and current.version == version and resources is self.table.resources:
            return current
        draft = self._drafts.get(spec.id)
        if draft is not None and draft[1].spec is spec and draft[0] == resources.fingerprint:
            return dataclasses.replace(draft[1], version=version)
        try:
            compiled = compile_contract(spec, version, resources.for_rust, resources.registry)
        except (ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
            raise _compile_error(spec, exc) from exc
        if version == 0:
            self._drafts[spec.id] = (resources.fingerprint, compiled)
        return compiled

    def build(self, active: Active) -> ContractTable:
        """The table for ``active`` from nothing (start-up, or shared schemas changed): refuse overlapping
        bindings, then compile every contract against the shared schemas they publish."""
        bindings, conflicts = Bindings().revised((), (spec for spec, _ in active.values()))
        _refuse(conflicts, active)
        resources = self._resources_for(active, active.keys())
        table = ContractTable(self._compile(spec, version, resources) for spec, version in active.values())
        table.resources, table.bindings = resources, bindings
        return table

    def revise(self, active: Active, changed: Collection[str]) -> ContractTable:
        """The table for ``active``, which differs from the one in force at ``changed`` only: those are checked
        for overlapping bindings and compiled, everything else is reused. Runs in a worker thread."""
        resources = self._resources_for(active, changed)
        if resources is not self.table.resources:  # every contract may $ref what changed: compile all again
            return self.build(active)
        removed = [doc_id for doc_id in changed if doc_id not in active]
        specs = [active[doc_id][0] for doc_id in changed if doc_id in active]
        bindings, conflicts = self.table.bindings.revised(removed, specs)
        _refuse(conflicts, active)
        table = self.table.revised((self._compile(spec, active[spec.id][1], resources) for spec in specs), removed)
        table.bindings = bindings
        return table

    def _resources_for(self, active: Active, changed: Iterable[str]) -> SchemaResources:
        """The shared schemas of ``active``: those in force unless a changed document publishes some (or did)."""
        before = self._active
        if not any(
            entry[0].shared_schemas for doc_id in changed for entry in (active.get(doc_id), before.get(doc_id)) if entry
        ):
            return self.table.resources
        resources = SchemaResources(schema for spec, _ in active.values() for schema in spec.shared_schemas)
        return self.table.resources if resources.fingerprint == self.table.resources.fingerprint else resources

    def installed(self, table: ContractTable) -> None:
        self._drafts.clear()

    async def settle(self, active: dict[str, tuple[ContractSpec, int]]) -> dict[str, tuple[ContractSpec, int]]:
        """A store that already holds overlapping contracts in force (written before bindings were checked, or
        by two gateways at once) does not stop the gateway: the contract registered first keeps the binding,
        each later one is deactivated in the store (its versions stay readable) and logged."""
        _, conflicts = Bindings().revised((), (spec for spec, _ in active.values()))
        for claimant, holder in conflicts:
            log.warning(
                "contract %r binds %s, which %s already binds: deactivated",
                claimant.id, describe(claimant), _holder(*active[holder]),
            )  # fmt: skip
            await self._store.set_active(self.kind, claimant.id, None)
            del active[claimant.id]
        return active


__all__ = ["BindingConflict", "ContractNotFound", "ContractRegistry", "ContractTable", "SchemaResources"]
