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
environment variable the policy names), and is retried with exponential backoff until a 2xx or
``max_attempts``. Notification runs in the background: a slow receiver never delays the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
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
from gateway.store.base import EscalationItem, Store

log = logging.getLogger("agent_gateway.escalation")

SIGNATURE_HEADER = "X-Agent-Gateway-Signature"
OUTCOME_PATH = "/.well-known/agent-gateway/escalations/"
_MARKER = orjson.dumps(REDACTED)


class EscalationNotFound(LookupError):
    pass


class EscalationClosed(ValueError):
    """The item is no longer pending."""


class EscalationNotStored(RuntimeError):
    """The dead-letter queue could not be written (store down or failing): the item does not exist."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},sha256={digest}"


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """Check a signature header (what a webhook receiver does), in constant time."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "sha256" not in fields or not fields["t"].isdigit():
        return False
    return hmac.compare_digest(sign(secret, int(fields["t"]), body), header)


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


class Escalations:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._environ = os.environ if environ is None else environ
        self._sleep = sleep
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[bool]] = set()
        self._pending = 0

    async def bind(self, session: aiohttp.ClientSession) -> None:
        """Use ``session`` for webhooks, and count the items still pending from earlier runs."""
        self.session = session
        self._pending = await self._store.count_escalations("pending")

    def pending_count(self) -> int:
        """The dead-letter queue's depth (pending items), for the metrics."""
        return self._pending

    async def escalate(self, item: EscalationItem, webhook: Webhook | None) -> EscalationItem:
        """Store ``item`` and notify; :class:`EscalationNotStored` when the store fails (no webhook then:
        there is no item for a person to act on, and the caller is told to retry)."""
        try:
            await self._store.add_escalation(item)
        except Exception as exc:  # any backend's failure (Redis down, SQLite error) means the same here
            raise EscalationNotStored(f"escalation {item.id} could not be stored: {exc!r}") from exc
        self._pending += 1
        if webhook is not None:
            task = asyncio.create_task(self.notify(item, webhook), name=f"escalation-webhook-{item.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return item

    async def notify(self, item: EscalationItem, webhook: Webhook) -> bool:
        """Deliver the webhook, retrying with backoff; returns whether a 2xx was received."""
        assert self.session is not None, "bind() a client session first"
        body = orjson.dumps({"event": "escalation.created", "escalation": public_view(item)})
        secret = self._environ.get(webhook.secret_env, "") if webhook.secret_env else ""
        for attempt in range(1, webhook.max_attempts + 1):
            headers = {"Content-Type": "application/json", "X-Agent-Gateway-Event": "escalation.created"}
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret.encode(), int(self._clock()), body)
            try:
                async with self.session.post(webhook.url, data=body, headers=headers) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    log.warning("escalation webhook answered %d (attempt %d)", resp.status, attempt)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("escalation webhook failed (attempt %d): %s", attempt, exc)
            if attempt < webhook.max_attempts:
                await self._sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
        log.error("escalation %s: webhook gave up after %d attempts", item.id, webhook.max_attempts)
        return False

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
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def new_item_id() -> str:
    return "esc_" + secrets.token_hex(8)
