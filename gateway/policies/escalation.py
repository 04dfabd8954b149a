"""Escalation to a person: a durable dead-letter queue of failed handoffs, and a signed webhook.

Item life cycle::

    pending ──resolve(corrected response, checked against the contract)──▶ resolved
    pending ──replay(to the upstream; its answer checked against the contract)──▶ replayed
    pending ──discard──▶ discarded

Resolving or replaying stores the accepted response as the checkpoint of the original request, so a pipeline
that re-runs the step with the same ``Idempotency-Key`` resumes with the person's answer; the original caller
can also poll ``/.well-known/agent-gateway/escalations/{id}``.

Items are stored already redacted (``audit.redact`` pointers in the request and upstream bodies,
``audit.redact_headers`` in the request headers), so the DLQ, its admin views and the webhook never hold a
secret. A redacted value is the string ``"[redacted]"``; :func:`redacted_parts` lists where they are, and the
public view shows that list as ``redacted`` so a person (and replay) knows what cannot be sent again.

The webhook gets ``{"event": "escalation.created", "escalation": {...}}``, signed with HMAC-SHA256 over
``"<timestamp>.<body>"`` in ``X-Agent-Gateway-Signature: t=<timestamp>,sha256=<hex>`` (the key comes from the
environment variable the policy names). It is written to the store's outbox with the item and delivered in the
background, at least once, by any gateway on the store (``outbox.py``): a slow receiver never delays the
caller, and a restart never loses it.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import orjson

from gateway.jsonpointer import REDACTED, markers
from gateway.policies.document import Webhook
from gateway.policies.outbox import Outbox
from gateway.store.base import EscalationItem, Store, WebhookDelivery

OUTCOME_PATH = "/.well-known/agent-gateway/escalations/"
_MARKER = orjson.dumps(REDACTED)


class EscalationNotFound(LookupError):
    pass


class EscalationClosed(ValueError):
    """The item is no longer pending."""


class EscalationNotStored(RuntimeError):
    """The dead-letter queue could not be written (store down or failing): the item does not exist."""


def public_view(item: EscalationItem) -> dict[str, Any]:
    """The item as JSON for people: bodies decoded (JSON when they parse, else base64), and what was redacted."""
    view: dict[str, Any] = {name: getattr(item, name) for name in EscalationItem.__slots__}
    for name in ("request_body", "upstream_body", "resolution_body"):
        raw = view.pop(name)
        view[name.replace("_body", "")] = None if raw is None else _decoded(raw)
    view["request_headers"] = dict(item.request_headers)
    view["violations"] = [dict(v) for v in item.violations]
    view["outcome_url"] = OUTCOME_PATH + item.id
    view["redacted"] = redacted_parts(item)
    return view


def redacted_parts(item: EscalationItem) -> dict[str, list[str]]:
    """Where the stored item holds ``"[redacted]"``: request header names, and JSON pointers into the request
    and upstream bodies. Replay cannot resend the request's. A value that was literally ``"[redacted]"`` is
    listed too (indistinguishable; listing too much only makes replay refuse where it could have sent)."""
    return {
        "request_headers": [str(k) for k, v in item.request_headers.items() if v == REDACTED],
        "request": _markers(item.request_body),
        "upstream": _markers(item.upstream_body),
    }


def _markers(raw: bytes | None) -> list[str]:
    """Pointers to the redacted values of a JSON body; the byte search keeps the walk off bodies without any."""
    if raw is None or _MARKER not in raw:
        return []
    try:
        return markers(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return []


def _decoded(raw: bytes) -> Any:
    try:
        return {"json": orjson.loads(raw)}
    except orjson.JSONDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def webhook_delivery(item: EscalationItem, webhook: Webhook, now: float) -> WebhookDelivery:
    """The outbox entry for ``item``: its body fixed now, its id (``Webhook-Id``) derived from the item's."""
    body = orjson.dumps({"event": "escalation.created", "escalation": public_view(item)})
    return WebhookDelivery(
        id="msg_" + item.id.removeprefix("esc_"), item_id=item.id, url=webhook.url, body=body, created_at=now,
        next_at=now, give_up_at=now + webhook.give_up_after_seconds, max_attempts=webhook.max_attempts,
        secret_env=webhook.secret_env,
    )  # fmt: skip


class Escalations:
    def __init__(
        self, store: Store, *, clock: Callable[[], float] = time.time, environ: Mapping[str, str] | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._environ = os.environ if environ is None else environ
        self.session: aiohttp.ClientSession | None = None
        self.outbox: Outbox | None = None
        self._pending = 0

    async def bind(self, session: aiohttp.ClientSession) -> None:
        """Use ``session`` for webhooks (start delivering the outbox), and count the items still pending from
        earlier runs."""
        self.session = session
        self._pending = await self._store.count_escalations("pending")
        self.outbox = Outbox(self._store, session, environ=self._environ, clock=self._clock)
        self.outbox.start()

    def pending_count(self) -> int:
        """The dead-letter queue's depth (pending items), for the metrics."""
        return self._pending

    async def escalate(self, item: EscalationItem, webhook: Webhook | None) -> EscalationItem:
        """Store ``item`` with its webhook in the outbox; :class:`EscalationNotStored` when the store fails (no
        webhook then: there is no item for a person to act on, and the caller is told to retry)."""
        delivery = None if webhook is None else webhook_delivery(item, webhook, self._clock())
        try:
            await self._store.add_escalation(item, delivery)
        except Exception as exc:  # any backend's failure (Redis down, SQLite error) means the same here
            raise EscalationNotStored(f"escalation {item.id} could not be stored: {exc!r}") from exc
        self._pending += 1
        if delivery is not None and self.outbox is not None:
            self.outbox.wake()
        return item

    async def get(self, item_id: str) -> EscalationItem:
        item = await self._store.get_escalation(item_id)
        if item is None:
            raise EscalationNotFound(item_id)
        return item

    async def pending(self, item_id: str) -> EscalationItem:
        item = await self.get(item_id)
        if item.status != "pending":
            raise EscalationClosed(f"escalation {item_id} is already {item.status}")
        return item

    async def close_item(
        self, item: EscalationItem, status: str, *, response: tuple[int, bytes] | None = None, note: str | None = None
    ) -> EscalationItem:
        closed = replace(
            item, status=status, resolved_at=self._clock(), note=note,
            resolution_status=response[0] if response else None, resolution_body=response[1] if response else None,
        )  # fmt: skip
        await self._store.replace_escalation(closed)
        if item.status == "pending":
            self._pending -= 1
        return closed

    async def close(self) -> None:
        if self.outbox is not None:
            await self.outbox.close()


def new_item_id() -> str:
    return "esc_" + secrets.token_hex(8)
