"""Stale-context detection: within a run, a handoff must not build on an older artifact than one already made.

A contract may declare ``context.produces`` (its responses publish a version of an artifact, e.g. a draft)
and ``context.consumes`` (its requests build on one). Where the version lives is declared as a JSON pointer
(``version``), a header (``header``, e.g. ``X-Context-Version``), or — for agents that carry no version at
all — the artifact itself embedded at a pointer (``embed``), matched by SHA-256 of its canonical JSON against
the outputs produced earlier in the run. Versions live in the store, so sidecars sharing a store see each
other's outputs.

When the store fails: a lookup (:meth:`ContextTracker.check`) raises :class:`StoreUnavailable` and the proxy
refuses the request with 503 unless the policy's ``context.on_store_error`` is ``bypass``; a record
(:meth:`ContextTracker.record`) is given up — the valid answer is still relayed, the store logs and counts the
failure, and only a later stale request of that run can go unnoticed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.contracts.document import ArtifactRef
from gateway.errors import StoreUnavailable, Violation
from gateway.jsonpointer import MISSING, resolve
from gateway.store.base import ArtifactVersion, Store

log = logging.getLogger("agent_gateway.context")


def canonical_digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys), so equal content matches whatever its spacing."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _version(ref: ArtifactRef, document: Any, headers: Mapping[str, str]) -> float | None:
    raw: Any = MISSING
    if ref.version is not None and document is not None:
        raw = resolve(document, ref.version)
    elif ref.header is not None:
        raw = headers.get(ref.header, MISSING)
    try:
        return None if raw is MISSING or isinstance(raw, bool) else float(raw)
    except (TypeError, ValueError):
        return None


def _embedded_digest(ref: ArtifactRef, document: Any) -> str | None:
    if ref.embed is None or document is None:
        return None
    value = resolve(document, ref.embed)
    return None if value is MISSING else canonical_digest(value)


class ContextTracker:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, run_id: str, ref: ArtifactRef, document: Any, headers: Mapping[str, str]) -> None:
        """Remember that this run produced a (new) version of ``ref.artifact``; a store failure never costs the
        caller the answer it is attached to."""
        version, digest = _version(ref, document, headers), _embedded_digest(ref, document)
        if version is None and digest is None:
            return
        try:
            await self._store.add_artifact_version(ArtifactVersion(run_id, ref.artifact, version, digest, time.time()))
        except StoreUnavailable:
            log.warning("run %s: %s version %s not recorded; stale context cannot be detected against it",
                        run_id, ref.artifact, version if version is not None else digest)  # fmt: skip

    async def check(self, run_id: str, ref: ArtifactRef, document: Any, headers: Mapping[str, str]) -> Violation | None:
        """A ``staleContext`` violation if the payload builds on an artifact older than the run's newest."""
        produced = await self._store.artifact_versions(run_id, ref.artifact)
        if not produced:
            return None
        consumed = _version(ref, document, headers)
        newest = max((p.version for p in produced if p.version is not None), default=None)
        if consumed is not None and newest is not None and consumed < newest:
            pointer = ref.version if ref.version is not None else f"/headers/{(ref.header or '').lower()}"
            return Violation(
                pointer, "staleContext",
                f"builds on {ref.artifact} version {consumed:g}, but version {newest:g} was already produced "
                f"in run {run_id}",
            )  # fmt: skip
        digest = _embedded_digest(ref, document)
        digests = [p.digest for p in produced]
        if digest is not None and digest in digests[:-1] and digest != digests[-1]:
            position = digests.index(digest) + 1
            return Violation(
                ref.embed or "", "staleContext",
                f"embeds {ref.artifact} #{position} of {len(digests)} produced in run {run_id}; a newer one exists",
            )  # fmt: skip
        return None
