"""Contracts and policies from directories (a ConfigMap volume, a Git checkout), applied as new versions.

Why polling. ``contract_dirs``/``policy_dirs`` are scanned every ``watch_interval`` seconds with ``stat`` only
(name, inode, size, mtime of each document file, following symlinks); the files are read only when that
fingerprint changed, or on ``SIGHUP``. inotify is Linux-only, and it misses the kubelet's update of a ConfigMap
volume: each key is a symlink ``name -> ..data/name``, ``..data`` a symlink to a timestamped directory, and an
update writes a new timestamped directory, points a new ``..data_tmp`` at it and renames that over ``..data`` —
no event on the watched names. ``stat`` follows the links, so the swap shows as new inodes.

One change per scan. Every changed document of a kind (all ``contract_dirs`` together, then all
``policy_dirs``) is registered with one :meth:`VersionedRegistry.register_many`: documents that refer to each
other land together, and the table in force is always the one of a whole checkout (old or new), never half of
each. Unchanged documents mint no version (the registry skips them). A directory that changes while it is being
read is read again at the next scan instead of being applied half-old, half-new.

A broken file (not JSON/YAML, not a valid document, conflicting with what is in force, unreadable) is logged
with its path and the problem, and *nothing* of that scan is applied: the other changed files of the same
commit may depend on it (a contract moved between files, a shared schema and its users), so applying them alone
could break references or enforce half a change; the running table stays as it was until a fixed commit
arrives. A broken fingerprint is not retried (it is reported once); a store failure is retried next scan.

A removed file is kept in force, with a warning naming the ids it held: taking a contract out of force turns
its enforcement off (fail open), which must be a deliberate ``DELETE /contracts/{id}`` (or
``agent-gateway contracts``), not the side effect of a file briefly missing during a non-atomic checkout, or of
one replica whose volume still holds an older ConfigMap while the store is shared by the whole fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.contracts.checked import content_digest
from gateway.contracts.document import ContractDocumentError, load_document_file
from gateway.control.versioning import VersionedRegistry

log = logging.getLogger("agent_gateway.watch")

Registry = VersionedRegistry[Any, Any]
DOCUMENT_SUFFIXES = frozenset({".json", ".yaml", ".yml"})
Fingerprint = tuple[tuple[str, int, int, int], ...]


class BrokenFile(ContractDocumentError):
    """A document file that cannot be applied; ``path`` names it (``None``: the batch as a whole conflicts)."""

    def __init__(self, path: Path | None, problem: ContractDocumentError | OSError) -> None:
        errors = problem.errors if isinstance(problem, ContractDocumentError) else []
        super().__init__(f"{path or 'the changed files together'}: {problem}", errors)
        self.path = path


def document_files(dirs: Sequence[Path]) -> list[Path]:
    """The document files of ``dirs`` in a stable order. Names starting with ``.`` are skipped: the kubelet's
    ``..data``, ``..data_tmp`` and timestamped directories, and editors' swap files. A directory that cannot be
    listed (not mounted yet, removed) is a :class:`BrokenFile`."""
    files = []
    for directory in dirs:
        try:
            listing = sorted(directory.iterdir())
        except OSError as exc:
            raise BrokenFile(directory, exc) from exc
        files += [path for path in listing if path.suffix in DOCUMENT_SUFFIXES and not path.name.startswith(".")]
    return files


def fingerprint(dirs: Sequence[Path]) -> Fingerprint:
    """What a scan compares: each document file's name, inode, size and mtime (of the symlink's target); a
    directory that cannot be listed counts as one entry, so its coming back is a change."""
    found = []
    for directory in dirs:
        try:
            files = document_files([directory])
        except BrokenFile:
            found.append((str(directory), -1, -1, -1))
            continue
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed between the listing and the stat (or a dangling link)
                continue
            found.append((str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def read_documents(dirs: Sequence[Path]) -> dict[Path, dict[str, Any]]:
    """Every document of ``dirs`` by file; :class:`BrokenFile` names the first one that cannot be read."""
    documents = {}
    for path in document_files(dirs):
        try:
            documents[path] = load_document_file(path)
        except (ContractDocumentError, OSError, UnicodeDecodeError) as exc:
            problem = exc if isinstance(exc, ContractDocumentError | OSError) else ContractDocumentError(str(exc), [])
            raise BrokenFile(path, problem) from exc
    return documents


def changed_documents(registry: Registry, documents: Mapping[Path, Mapping[str, Any]]) -> dict[Path, Any]:
    """The documents whose version in force (if any) differs from the file, as the registry compares them."""
    changed = {}
    for path, document in documents.items():
        active = registry.active_spec(str(document.get("id")))
        digest = content_digest(document)  # canonical JSON: to Python 1 == 1.0 == True, not to a schema
        if active is None or digest is None or content_digest(active.raw) != digest:
            changed[path] = document
    return changed


def culprit(
    registry: Registry, changed: Mapping[Path, Mapping[str, Any]], refused: ContractDocumentError
) -> BrokenFile:
    """The file to blame for a refused registration: the first that is invalid on its own, else none (the
    documents conflict together, or with what is in force). Runs only when a scan failed."""
    for path, document in changed.items():
        try:
            registry.parse(document)
        except ContractDocumentError as exc:
            return BrokenFile(path, exc)
    return BrokenFile(None, refused)


async def apply_changed(registry: Registry, changed: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """Register ``changed`` as one change; the ``id@version`` now in force for each (minted here, or adopted from
    a replica on the same store that registered the same content first). Raises
    :class:`BrokenFile` naming the file to blame, and then the table in force is as it was."""
    if not changed:
        return []
    try:
        stored = await registry.register_many(list(changed.values()))
    except ContractDocumentError as exc:
        raise await asyncio.to_thread(culprit, registry, changed, exc) from exc
    return [f"{entry.id}@{entry.version}" for entry in stored]


class DirectoryWatcher:
    """Polls the document directories of each registry and applies what changed (see the module docstring)."""

    def __init__(self, sources: Sequence[tuple[Registry, Sequence[Path]]], interval: float) -> None:
        self._sources = [(registry, tuple(dirs)) for registry, dirs in sources if dirs]
        self._interval = interval
        self._seen: dict[str, Fingerprint] = {}
        self._ids: dict[str, dict[str, Path]] = {}
        self._wake = asyncio.Event()
        self._forced = False

    @property
    def active(self) -> bool:
        return bool(self._sources)

    def rescan(self) -> None:
        """Read every directory again now, whatever the fingerprints say (``SIGHUP``)."""
        self._forced = True
        self._wake.set()

    async def run(self) -> None:
        """Scan every ``interval`` seconds (only on :meth:`rescan` when it is 0) until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval or None)
            self._wake.clear()
            forced, self._forced = self._forced, False
            await self.scan(force=forced)

    async def scan(self, *, force: bool = False) -> None:
        """One pass over every registry's directories; never raises (a failure is logged)."""
        for registry, dirs in self._sources:
            try:
                await self._scan_one(registry, dirs, force)
            except BrokenFile as exc:
                log.error("%s files not applied (the table in force is unchanged): %s", registry.kind, exc,
                          extra={"path": str(exc.path) if exc.path else None, "errors": exc.errors})  # fmt: skip
            except Exception:
                log.exception("%s files not applied; retrying at the next scan", registry.kind)

    async def load(self) -> None:
        """Start-up: register what the directories hold. A broken file raises :class:`BrokenFile` and the
        gateway does not start: there is no table in force yet to keep serving."""
        for registry, dirs in self._sources:
            await self._scan_one(registry, dirs, force=True, starting=True)

    async def _scan_one(self, registry: Registry, dirs: tuple[Path, ...], force: bool, starting: bool = False) -> None:
        before = await asyncio.to_thread(fingerprint, dirs)
        if not force and before == self._seen.get(registry.kind):
            return
        try:
            documents = await asyncio.to_thread(read_documents, dirs)
            # at start-up what was read is applied all the same: the first scan then sees the change
            if not starting and await asyncio.to_thread(fingerprint, dirs) != before:
                log.info("%s files changed while being read; reading them again at the next scan", registry.kind)
                return
            in_force = await apply_changed(registry, changed_documents(registry, documents))
            if in_force:
                log.info("%s documents from files in force: %s", registry.kind, ", ".join(in_force))
        except BrokenFile:
            self._seen[registry.kind] = before  # report a broken commit once, not every interval
            raise
        self._seen[registry.kind] = before
        self._note_removed(registry.kind, {str(d.get("id")): path for path, d in documents.items()})

    def _note_removed(self, kind: str, ids: dict[str, Path]) -> None:
        for gone in sorted(self._ids.get(kind, {}).keys() - ids.keys()):
            log.warning("%s %r: its file %s is gone; it stays in force (deactivate it through the admin API)",
                        kind, gone, self._ids[kind][gone])  # fmt: skip
        self._ids[kind] = ids
