"""State behind one interface: :class:`gateway.store.base.Store`, with an embedded SQLite default."""

from gateway.store.base import ArtifactVersion, ContractHead, HandoffRecord, RunSummary, Store, StoredContract
from gateway.store.sqlite import SQLiteStore

__all__ = [
    "ArtifactVersion",
    "ContractHead",
    "HandoffRecord",
    "RunSummary",
    "SQLiteStore",
    "Store",
    "StoredContract",
]
