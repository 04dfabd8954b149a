"""State behind one interface: :class:`gateway.store.base.Store`, with an embedded SQLite default."""

from gateway.store.base import ContractHead, Store, StoredContract
from gateway.store.sqlite import SQLiteStore

__all__ = ["ContractHead", "SQLiteStore", "Store", "StoredContract"]
