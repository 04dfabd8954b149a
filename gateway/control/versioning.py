"""Versioned documents (contracts, policies): the life cycle both share, in one place.

Life cycle of an id::

    register(doc) ──▶ version N+1 stored ──▶ (activate, the default) ──▶ in force
    activate(id, n) ─▶ any stored version comes into force (roll forward or back)
    deactivate(id) ──▶ nothing in force; every version stays readable; register again to revive

Every change is checked *before* anything is persisted — a change the subclass cannot build (an uncompilable
schema, a dangling reference, a binding another contract holds) is refused — and the new table is then swapped
in with one assignment, so a request that reads ``registry.table`` once sees one consistent set of versions from
start to end. A change costs what it changes: a subclass revises the table in force (:meth:`revise`) for the ids
that changed rather than building it whole, which only start-up does.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gateway.contracts.checked import content_digest
from gateway.contracts.document import ContractDocumentError
from gateway.store.base import DocumentHead, Store, StoredDocument

RELOAD_ONE_BY_ONE = 32
"""A reload that finds more changed documents than this fetches every version in force in one query instead."""
MAX_VERSION = 2**31 - 1
"""Highest version number of a document. Versions count registrations from 1; the bound keeps a version
within every store's integer type (SQLite, Redis, JSON), so an absurd number is "not found", never an overflow."""


@dataclass(frozen=True, slots=True)
class Planned:
    """One document of a dry run: its id, the version in force and its document (``None`` when the id has
    none), and whether registering would mint a version (``False``: identical to the version in force)."""

    id: str
    active_version: int | None
    active: Mapping[str, Any] | None
    changed: bool


class DocumentNotFound(LookupError):
    pass


class DocumentConflict(ContractDocumentError):
    """The document is valid on its own but conflicts with what is in force (a target that already has a
    policy, a binding another contract holds, a shared schema published differently): the admin API's 409."""


class _HasId(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def raw(self) -> Mapping[str, Any]: ...


SpecT = TypeVar("SpecT", bound=_HasId)
TableT = TypeVar("TableT")


class VersionedRegistry(ABC, Generic[SpecT, TableT]):
    kind: str

    def __init__(self, store: Store, empty: TableT) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._active: dict[str, tuple[SpecT, int]] = {}
        self.table: TableT = empty

    @abstractmethod
    def parse(self, document: Mapping[str, Any]) -> SpecT:
        """The typed form of a document; raise :class:`ContractDocumentError` if it is not valid."""

    def parse_stored(self, document: Mapping[str, Any]) -> SpecT:
        """The typed form of a stored version: it was checked when registered, a subclass may skip that."""
        return self.parse(document)

    @abstractmethod
    def build(self, active: Mapping[str, tuple[SpecT, int]]) -> TableT:
        """The table for this set of active versions; raise :class:`ContractDocumentError` if impossible."""

    def revise(self, active: Mapping[str, tuple[SpecT, int]], changed: Collection[str]) -> TableT:
        """The table for ``active``, which differs from the one in force only at the ids in ``changed`` (added,
        replaced or removed): a subclass whose table is costly overrides this to reuse the rest. Default: build."""
        return self.build(active)

    def precheck(self, active: Mapping[str, tuple[SpecT, int]], changed: Collection[str]) -> None:
        """Raise if :meth:`revise` would (a registration refused before anything is stored; its versions are
        still 0). Default: revise and drop the table; a subclass may check without building one."""
        self.revise(active, changed)

    def installed(self, table: TableT) -> None:
        """Hook called after a new table is in force (caches)."""

    async def settle(self, active: dict[str, tuple[SpecT, int]]) -> dict[str, tuple[SpecT, int]]:
        """Hook for :meth:`load`: the loaded active set made buildable. A store can hold what this gateway would
        refuse (written by an older version, or by two gateways at once); ``active`` is in the order the
        versions were registered, so a subclass can keep the first of two conflicting documents."""
        return active

    def _parse_all(self, documents: Sequence[Mapping[str, Any]]) -> list[SpecT]:
        return [self.parse(document) for document in documents]

    def _parse_stored_all(self, documents: Sequence[Mapping[str, Any]]) -> list[SpecT]:
        return [self.parse_stored(document) for document in documents]

    def active_version(self, doc_id: str) -> int | None:
        entry = self._active.get(doc_id)
        return None if entry is None else entry[1]

    def active_spec(self, doc_id: str) -> SpecT | None:
        entry = self._active.get(doc_id)
        return None if entry is None else entry[0]

    async def load(self) -> None:
        """Bring the table in line with the store (at start-up, and when another gateway changed it).

        At start-up every version in force comes in one query. Afterwards only what differs from the store's
        heads is fetched, parsed and compiled; a change the table in force cannot take (two gateways bound the
        same operation at once) falls back to loading everything, which settles it. Parsing and building run in
        a worker thread, here and in every change below, and the data plane keeps serving the old table until
        the new one is ready."""
        async with self._lock:
            if not self._active:
                await self._load_all()
                return
            heads = await self._store.list_heads(self.kind)
            wanted = {h.id: h.active_version for h in heads if h.active_version is not None}
            changed = [i for i, v in wanted.items() if self.active_version(i) != v]
            changed += [i for i in self._active if i not in wanted]
            if len(changed) > RELOAD_ONE_BY_ONE:
                await self._load_all()
            elif changed:
                stored = [await self.version(i, wanted[i]) for i in changed if i in wanted]
                specs = await asyncio.to_thread(self._parse_stored_all, [entry.document for entry in stored])
                active = dict(self._active)
                for gone in (i for i in changed if i not in wanted):
                    del active[gone]
                active.update((entry.id, (spec, entry.version)) for entry, spec in zip(stored, specs, strict=True))
                try:
                    await self._swap(active, changed)
                except DocumentConflict:
                    await self._load_all()

    async def _load_all(self) -> None:
        stored = await self._store.active_documents(self.kind)
        stored.sort(key=lambda entry: (entry.created_at, entry.id))
        specs = await asyncio.to_thread(self._parse_stored_all, [entry.document for entry in stored])
        active = await self.settle({entry.id: (spec, entry.version) for entry, spec in zip(stored, specs, strict=True)})
        self._install(active, await asyncio.to_thread(self.build, active))

    async def register(self, document: Mapping[str, Any], *, activate: bool = True) -> StoredDocument:
        (stored,) = await self.register_many([document], activate=activate)
        return stored

    async def register_many(
        self, documents: Sequence[Mapping[str, Any]], *, activate: bool = True
    ) -> list[StoredDocument]:
        """Register several documents as one change (documents that refer to each other can arrive together);
        either all are accepted and stored, or none is. A document identical to the version in force stores
        nothing and is not even parsed: pushing the same files again (CI, a ConfigMap re-applied) must not mint
        versions nobody wrote, nor cost what registering them did. The change is checked (its documents only)
        before anything is stored, and the table is built once, after the store has numbered the versions.

        "Identical to the version in force" is checked twice: here against the table this gateway loaded, and
        in the store, atomically with the write (``add_active_version``), against what is in force there now:
        another gateway may have stored the same document since (replicas starting together on the same files).
        Then no version is minted and this table takes the stored version's number."""
        async with self._lock:
            ids, specs, fresh = await self._prepare(documents, activate)
            add = self._store.add_active_version if activate else self._store.add_version
            stored = {s.id: await add(self.kind, s.id, d) for s, d in zip(specs, fresh, strict=True)}
            if activate and specs:
                await self._swap({**self._active, **{s.id: (s, stored[s.id].version) for s in specs}}, list(stored))
            for doc_id in set(ids) - stored.keys():
                stored[doc_id] = await self.version(doc_id, self._active[doc_id][1])
            return [stored[doc_id] for doc_id in ids]

    async def preview(self, documents: Sequence[Mapping[str, Any]], *, activate: bool = True) -> list[Planned]:
        """What :meth:`register_many` would do with ``documents``, refused exactly as it would be, storing
        nothing (a dry run): one entry per document, in order, with the version in force it would replace."""
        async with self._lock:
            ids, specs, _ = await self._prepare(documents, activate)
            minted = {spec.id for spec in specs}
            return [Planned(i, self.active_version(i), self._raw(i), i in minted) for i in ids]

    async def _prepare(
        self, documents: Sequence[Mapping[str, Any]], activate: bool
    ) -> tuple[list[str], list[SpecT], list[Mapping[str, Any]]]:
        """``(ids, specs, fresh)`` of a registration checked before anything is stored: the ids in order, and
        the parsed and the raw documents that would mint a version. Callers hold the lock."""
        kept = [activate and self._unchanged(document) for document in documents]
        fresh = [document for document, same in zip(documents, kept, strict=True) if not same]
        specs = await asyncio.to_thread(self._parse_all, fresh)
        parsed = iter(specs)
        ids = [document["id"] if same else next(parsed).id for document, same in zip(documents, kept, strict=True)]
        if len(set(ids)) != len(ids):
            raise ContractDocumentError(f"the same {self.kind} id appears twice in one registration", [])
        if specs:
            pending = {**self._active, **{spec.id: (spec, 0) for spec in specs}}
            await asyncio.to_thread(self.precheck, pending, [spec.id for spec in specs])  # refuse before storing
        return ids, specs, fresh

    def _raw(self, doc_id: str) -> Mapping[str, Any] | None:
        entry = self._active.get(doc_id)
        return None if entry is None else entry[0].raw

    def _unchanged(self, document: Mapping[str, Any]) -> bool:
        """Whether ``document`` is, member for member, the version in force of its id. Compared as canonical JSON,
        not with ``==``: Python says ``0 == False`` and ``1 == 1.0``, JSON Schema does not (``{"schema": 0}`` is
        no schema at all and must be refused, not taken for a stored ``false``)."""
        doc_id = document.get("id")
        entry = self._active.get(doc_id) if isinstance(doc_id, str) else None
        return entry is not None and content_digest(entry[0].raw) == content_digest(document) is not None

    async def activate(self, doc_id: str, version: int) -> None:
        async with self._lock:
            stored = await self.version(doc_id, version)
            (spec,) = await asyncio.to_thread(self._parse_stored_all, [stored.document])
            active = {**self._active, doc_id: (spec, version)}
            table = await asyncio.to_thread(self.revise, active, [doc_id])
            await self._store.set_active(self.kind, doc_id, version)
            self._install(active, table)

    async def deactivate(self, doc_id: str) -> None:
        """Take ``doc_id`` out of force; a document with versions but none in force already is (idempotent)."""
        async with self._lock:
            if doc_id not in self._active:
                await self.versions(doc_id)  # DocumentNotFound when it was never registered
                return
            active = dict(self._active)
            del active[doc_id]
            table = await asyncio.to_thread(self.revise, active, [doc_id])
            await self._store.set_active(self.kind, doc_id, None)
            self._install(active, table)

    async def heads(self) -> list[DocumentHead]:
        return await self._store.list_heads(self.kind)

    async def versions(self, doc_id: str) -> list[StoredDocument]:
        versions = await self._store.list_versions(self.kind, doc_id)
        if not versions:
            raise DocumentNotFound(doc_id)
        return versions

    async def version(self, doc_id: str, version: int) -> StoredDocument:
        """Version ``version`` of ``doc_id``; one outside ``1..MAX_VERSION`` cannot exist and is not looked up."""
        if not 1 <= version <= MAX_VERSION:
            raise DocumentNotFound(f"{doc_id} version {version}")
        stored = await self._store.get_version(self.kind, doc_id, version)
        if stored is None:
            raise DocumentNotFound(f"{doc_id} version {version}")
        return stored

    async def _swap(self, active: dict[str, tuple[SpecT, int]], changed: Collection[str]) -> None:
        self._install(active, await asyncio.to_thread(self.revise, active, changed))

    def _install(self, active: dict[str, tuple[SpecT, int]], table: TableT) -> None:
        self._active = active
        self.table = table
        self.installed(table)
