"""How stored records become bytes and back, shared by every store backend."""

from __future__ import annotations

import base64

import orjson

from gateway.store.base import BreakerRecord, CheckpointRecord, EscalationItem, HandoffRecord, WebhookDelivery

_BODIES = ("request_body", "upstream_body", "resolution_body")


def encode_record(record: HandoffRecord) -> bytes:
    return orjson.dumps(record)  # orjson serialises dataclasses natively


def decode_record(blob: bytes | str) -> HandoffRecord:
    fields = orjson.loads(blob)
    fields["violations"] = tuple(fields["violations"])
    return HandoffRecord(**fields)


def encode_item(item: EscalationItem) -> bytes:
    fields = {name: getattr(item, name) for name in EscalationItem.__slots__}
    for name in _BODIES:
        fields[name] = None if fields[name] is None else base64.b64encode(fields[name]).decode()
    return orjson.dumps(fields)


def decode_item(blob: bytes | str) -> EscalationItem:
    fields = orjson.loads(blob)
    for name in _BODIES:
        fields[name] = None if fields[name] is None else base64.b64decode(fields[name])
    fields["violations"] = tuple(fields["violations"])
    return EscalationItem(**fields)


def encode_checkpoint(record: CheckpointRecord) -> bytes:
    fields = {name: getattr(record, name) for name in CheckpointRecord.__slots__}
    fields["body"] = None if record.body is None else base64.b64encode(record.body).decode()
    fields["headers"] = None if record.headers is None else dict(record.headers)
    return orjson.dumps(fields)


def decode_checkpoint(blob: bytes | str) -> CheckpointRecord:
    fields = orjson.loads(blob)
    fields["body"] = None if fields["body"] is None else base64.b64decode(fields["body"])
    return CheckpointRecord(**fields)


def encode_delivery(delivery: WebhookDelivery) -> bytes:
    fields = {name: getattr(delivery, name) for name in WebhookDelivery.__slots__}
    fields["body"] = delivery.body.decode()  # the webhook's JSON: UTF-8 text, kept readable in the store
    return orjson.dumps(fields)


def decode_delivery(blob: bytes | str) -> WebhookDelivery:
    fields = orjson.loads(blob)
    fields["body"] = fields["body"].encode()
    return WebhookDelivery(**fields)


def encode_breaker(record: BreakerRecord) -> bytes:
    return orjson.dumps(record)


def decode_breaker(blob: bytes | str) -> BreakerRecord:
    return BreakerRecord(**orjson.loads(blob))
