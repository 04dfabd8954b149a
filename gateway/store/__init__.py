"""State behind one interface: :class:`gateway.store.base.Store`, with an embedded SQLite default."""

from gateway.store.base import ArtifactVersion, DocumentHead, HandoffRecord, RunSummary, Store, StoredDocument
from gateway.store.sqlite import SQLiteStore

__all__ = [
    "ArtifactVersion",
    "DocumentHead",
    "HandoffRecord",
    "RunSummary",
    "SQLiteStore",
    "Store",
    "StoredDocument",
]
