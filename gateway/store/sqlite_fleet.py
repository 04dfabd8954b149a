"""The SQLite store's fleet tables: the webhook outbox and shared breaker transitions.

SQLite is one host: "fleet" here means the gateway processes sharing one file (a Deployment's replicas cannot).
Several processes may still run on that host, so claims are leases taken in ``BEGIN IMMEDIATE`` transactions,
and the breaker table keeps the newest transition whatever order the writes arrive in.
"""

from __future__ import annotations

import sqlite3

from gateway.store.base import BreakerRecord, WebhookDelivery
from gateway.store.codec import decode_breaker, decode_delivery, encode_breaker, encode_delivery
from gateway.store.sqlite_schema import transaction


def insert_delivery(c: sqlite3.Connection, delivery: WebhookDelivery) -> None:
    c.execute(
        "INSERT INTO outbox (id, item_id, status, next_at, delivery) VALUES (?, ?, ?, ?, ?)",
        (delivery.id, delivery.item_id, delivery.status, delivery.next_at, encode_delivery(delivery)),
    )


def claim(c: sqlite3.Connection, owner: str, now: float, lease: float, limit: int) -> list[WebhookDelivery]:
    """Lease due deliveries to ``owner`` by moving their due time past the lease. The read outside a
    transaction keeps the idle poll (nothing due) off SQLite's write lock."""
    due = "SELECT delivery FROM outbox WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?"
    if not c.execute(due, (now, limit)).fetchone():
        return []
    with transaction(c):
        rows = c.execute(due, (now, limit)).fetchall()
        deliveries = [decode_delivery(row[0]) for row in rows]
        c.executemany(
            "UPDATE outbox SET next_at = ?, owner = ? WHERE id = ?", [(now + lease, owner, d.id) for d in deliveries]
        )
    return deliveries


def finish(c: sqlite3.Connection, delivery: WebhookDelivery, owner: str) -> bool:
    changed = c.execute(
        "UPDATE outbox SET status = ?, next_at = ?, owner = NULL, delivery = ? WHERE id = ? AND owner = ?",
        (delivery.status, delivery.next_at, encode_delivery(delivery), delivery.id, owner),
    ).rowcount
    return changed > 0


def release(c: sqlite3.Connection, owner: str, now: float) -> int:
    """Give up ``owner``'s leases: its pending deliveries are due at ``now`` for any gateway to claim."""
    return c.execute(
        "UPDATE outbox SET next_at = ?, owner = NULL WHERE owner = ? AND status = 'pending'", (now, owner)
    ).rowcount


def delivery_of(c: sqlite3.Connection, item_id: str) -> WebhookDelivery | None:
    row = c.execute("SELECT delivery FROM outbox WHERE item_id = ?", (item_id,)).fetchone()
    return None if row is None else decode_delivery(row[0])


def put_breaker(c: sqlite3.Connection, record: BreakerRecord) -> None:
    c.execute(
        "INSERT INTO breakers VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET at = excluded.at,"
        " origin = excluded.origin, record = excluded.record"
        " WHERE (excluded.at, excluded.origin) > (breakers.at, breakers.origin)",
        (record.name, record.at, record.origin, encode_breaker(record)),
    )


def breaker_records(c: sqlite3.Connection) -> list[BreakerRecord]:
    return [decode_breaker(row[0]) for row in c.execute("SELECT record FROM breakers ORDER BY name")]
