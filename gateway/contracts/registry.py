"""The versioned contract registry and the immutable table the data plane reads.

Life cycle of a contract id::

    register(doc) ──▶ version N+1 stored ──▶ (activate, the default) ──▶ enforced
    activate(id, n) ─▶ any stored version becomes the enforced one (roll forward or back)
    deactivate(id) ──▶ nothing enforced; every version stays readable; register again to revive

Every change builds a complete new :class:`ContractTable` *before* anything is persisted (so a change that
would leave some contract uncompilable is refused) and then swaps it in with one assignment. A request reads
``registry.table`` once, so it sees exactly one version of its contract from start to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jsonschema_rs
import orjson
import referencing
from referencing.jsonschema import DRAFT202012

from gateway.contracts.document import ContractDocumentError, ContractSpec, parse_contract
from gateway.contracts.paths import PathTemplate
from gateway.contracts.validation import CompiledContract, compile_contract
from gateway.store.base import DocumentHead, Store, StoredDocument

KIND = "contract"


class ContractNotFound(LookupError):
    pass


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
                raise ContractDocumentError(
                    f"shared schema {uri!r} is published twice with different contents",
                    [{"pointer": "/schemas", "message": f"conflicting definitions of {uri}"}],
                )
        ordered = [(uri, by_uri[uri]) for uri in sorted(by_uri)]
        self.registry: referencing.Registry[Any] = referencing.Registry().with_resources(
            (uri, DRAFT202012.create_resource(schema)) for uri, schema in ordered
        )
        self.fingerprint = orjson.dumps(ordered, option=orjson.OPT_SORT_KEYS)
        self._rust = jsonschema_rs.Registry(ordered) if ordered else None

    @property
    def for_rust(self) -> jsonschema_rs.Registry | None:
        return self._rust


class ContractTable:
    """Immutable index ``(route, method) → [(path template, compiled contract)]``, most specific first."""

    __slots__ = ("_contracts", "_index")

    def __init__(self, contracts: Iterable[CompiledContract] = ()) -> None:
        self._contracts = {c.id: c for c in contracts}
        index: dict[tuple[str, str], list[tuple[PathTemplate, CompiledContract]]] = {}
        for contract in self._contracts.values():
            op = contract.spec.operation
            index.setdefault((contract.spec.route, op.method), []).append((PathTemplate(op.path), contract))
        for entries in index.values():
            entries.sort(key=lambda entry: entry[0].specificity)
        self._index = index

    def find(self, route: str, method: str, path: str) -> CompiledContract | None:
        for template, contract in self._index.get((route, method), ()):
            if template.matches(path):
                return contract
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


class ContractRegistry:
    """Registers, versions and activates contracts; owns the :class:`ContractTable` the proxy reads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._active: dict[str, tuple[ContractSpec, int]] = {}
        self._cache: dict[tuple[str, int], CompiledContract] = {}
        self._resources = SchemaResources()
        self.table = ContractTable()

    async def load(self) -> None:
        """Rebuild the table from the store (at start-up)."""
        async with self._lock:
            active: dict[str, tuple[ContractSpec, int]] = {}
            for head in await self._store.list_heads(KIND):
                if head.active_version is not None:
                    stored = await self._get_stored(head.id, head.active_version)
                    active[head.id] = (parse_contract(stored.document), stored.version)
            self._swap(active)

    async def register(self, document: Mapping[str, Any], *, activate: bool = True) -> StoredDocument:
        """Store ``document`` as the next version of its id; raise :class:`ContractDocumentError` if bad."""
        (stored,) = await self.register_many([document], activate=activate)
        return stored

    async def register_many(
        self, documents: Sequence[Mapping[str, Any]], *, activate: bool = True
    ) -> list[StoredDocument]:
        """Register several documents as one change, so contracts that ``$ref`` each other's shared schemas
        can arrive together; either all compile and are stored, or none is."""
        specs = [parse_contract(document) for document in documents]
        if len({spec.id for spec in specs}) != len(specs):
            raise ContractDocumentError("the same contract id appears twice in one registration", [])
        async with self._lock:
            self._build({**self._active, **{spec.id: (spec, 0) for spec in specs}})  # refuse before storing
            stored = [await self._store.add_version(KIND, s.id, d) for s, d in zip(specs, documents, strict=True)]
            if activate:
                for entry in stored:
                    await self._store.set_active(KIND, entry.id, entry.version)
                versions = {entry.id: entry.version for entry in stored}
                self._swap({**self._active, **{spec.id: (spec, versions[spec.id]) for spec in specs}})
            return stored

    async def activate(self, contract_id: str, version: int) -> None:
        async with self._lock:
            stored = await self._get_stored(contract_id, version)
            active = {**self._active, contract_id: (parse_contract(stored.document), version)}
            self._build(active)
            await self._store.set_active(KIND, contract_id, version)
            self._swap(active)

    async def deactivate(self, contract_id: str) -> None:
        async with self._lock:
            if contract_id not in self._active:
                raise ContractNotFound(contract_id)
            active = {cid: entry for cid, entry in self._active.items() if cid != contract_id}
            self._build(active)
            await self._store.set_active(KIND, contract_id, None)
            self._swap(active)

    async def heads(self) -> list[DocumentHead]:
        return await self._store.list_heads(KIND)

    async def versions(self, contract_id: str) -> list[StoredDocument]:
        versions = await self._store.list_versions(KIND, contract_id)
        if not versions:
            raise ContractNotFound(contract_id)
        return versions

    async def _get_stored(self, contract_id: str, version: int) -> StoredDocument:
        stored = await self._store.get_version(KIND, contract_id, version)
        if stored is None:
            raise ContractNotFound(f"{contract_id} version {version}")
        return stored

    async def version(self, contract_id: str, version: int) -> StoredDocument:
        return await self._get_stored(contract_id, version)

    async def compiled(self, contract_id: str, version: int | None = None) -> CompiledContract:
        """The compiled form of a version (the active one by default), against today's shared schemas."""
        if version is None:
            active = self.table.get(contract_id)
            if active is None:
                raise ContractNotFound(contract_id)
            return active
        stored = await self._get_stored(contract_id, version)
        return self._compile(parse_contract(stored.document), version, self._resources)

    def _compile(self, spec: ContractSpec, version: int, resources: SchemaResources) -> CompiledContract:
        cacheable = version > 0 and resources is self._resources
        cached = self._cache.get((spec.id, version)) if cacheable else None
        if cached is not None:
            return cached
        try:
            return compile_contract(spec, version, resources.for_rust)
        except (ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
            raise _compile_error(spec, exc) from exc

    def _build(self, active: Mapping[str, tuple[ContractSpec, int]]) -> tuple[ContractTable, SchemaResources]:
        """Compile every active contract against the shared schemas they publish; raise if any fails."""
        resources = SchemaResources(schema for spec, _ in active.values() for schema in spec.shared_schemas)
        if resources.fingerprint == self._resources.fingerprint:
            resources = self._resources
        return ContractTable(self._compile(spec, v, resources) for spec, v in active.values()), resources

    def _swap(self, active: dict[str, tuple[ContractSpec, int]]) -> None:
        """Install a new table; validators compiled against the same shared schemas are reused."""
        table, resources = self._build(active)
        if resources is not self._resources:
            self._cache.clear()
            self._resources = resources
        self._cache.update({(c.id, c.version): c for c in table})
        self._active = active
        self.table = table


__all__ = ["ContractNotFound", "ContractRegistry", "ContractTable", "SchemaResources"]
