"""Durable escalation webhooks: an outbox in the store, delivered at least once by whichever gateway is free.

A delivery is written in the same store transaction as its DLQ item (``Store.add_escalation``), so a gateway
that stops, crashes or restarts mid-backoff loses nothing: every gateway on the store polls the outbox every
:data:`POLL_SECONDS` (and at once after escalating), claims due deliveries with a lease of
:data:`LEASE_SECONDS` (only the lease holder may record the outcome, so two sidecars never both own an entry;
one that dies mid-delivery leaves its entries due again once the lease ends), and posts them. A gateway that
stops gracefully lets its attempts in flight finish (for up to :data:`CLOSE_SECONDS`) and then releases what it
still holds, so another gateway takes over at once, not after the lease.

Each attempt sends the same body with ``Webhook-Id`` (stable for the delivery: receivers deduplicate on it, as
the Standard Webhooks spec asks), ``Webhook-Timestamp``, and, when the policy names a secret,
``X-Agent-Gateway-Signature: t=<timestamp>,sha256=<hex>`` (HMAC-SHA256 over ``"<timestamp>.<body>"``). A 2xx
marks it ``delivered``; anything else is retried after :func:`backoff` until ``max_attempts`` attempts or
``give_up_after_seconds`` after the escalation, whichever comes first, and then marked ``failed``. The outcome
shows in the admin DLQ item (``webhook``). At least once: a gateway killed after the receiver answered but
before the outcome was stored sends it again, under the same id.

A receiver's URL may carry its own credential (``?token=``, ``?sig=``): the admin view, the stored last error
and the log lines show it redacted (:func:`gateway.redaction.redacted_url`); only the POST itself uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
from yarl import URL

from gateway.errors import StoreUnavailable
from gateway.policies.fleet import sidecar_id
from gateway.redaction import redacted_url
from gateway.store.base import Store, WebhookDelivery, cancel_requested

log = logging.getLogger("agent_gateway.escalation")

SIGNATURE_HEADER = "X-Agent-Gateway-Signature"
POLL_SECONDS = 0.5
LEASE_SECONDS = 30.0
"""Longer than an attempt can take (:data:`ATTEMPT_SECONDS`), so a live deliverer never loses its lease."""
ATTEMPT_SECONDS = 10.0
CLOSE_SECONDS = 3.0
"""How long attempts in flight may finish when the gateway stops, before they are cut short and released. Short:
it runs after the data plane's drain, inside the pod's termination grace period (k8s/base/deployment.yaml)."""
BATCH = 16
"""Deliveries claimed (and posted concurrently) per poll."""
MAX_BACKOFF = 300.0


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},sha256={digest}"


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """Check a signature header (what a webhook receiver does), in constant time."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "sha256" not in fields or not fields["t"].isdigit():
        return False
    return hmac.compare_digest(sign(secret, int(fields["t"]), body), header)


def backoff(attempts: int) -> float:
    """Seconds after the ``attempts``-th failed attempt: 0.5, 1, 2, ... up to :data:`MAX_BACKOFF`."""
    return min(MAX_BACKOFF, 0.5 * 2.0 ** (attempts - 1))


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    """The delivery as the admin DLQ item shows it (not the body: the item itself is that)."""
    return {
        "id": delivery.id, "url": shown_url(delivery.url), "status": delivery.status, "attempts": delivery.attempts,
        "last_error": delivery.last_error, "next_at": delivery.next_at if delivery.status == "pending" else None,
        "finished_at": delivery.finished_at,
    }  # fmt: skip


def shown_url(url: str) -> str:
    """A receiver's URL as it may be shown: credential query values and userinfo redacted."""
    return redacted_url(URL(url, encoded=True))


class Outbox:
    def __init__(
        self, store: Store, session: aiohttp.ClientSession, *, environ: Mapping[str, str],
        clock: Callable[[], float] = time.time, poll_seconds: float = POLL_SECONDS,
        close_seconds: float = CLOSE_SECONDS,
    ) -> None:  # fmt: skip
        self._store = store
        self._session = session
        self._environ = environ
        self._clock = clock
        self._poll = poll_seconds
        self.close_seconds = close_seconds
        """How long :meth:`close` lets attempts in flight finish (:data:`CLOSE_SECONDS`)."""
        self._closing = False
        self.owner = sidecar_id()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reachable = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-outbox")

    def wake(self) -> None:
        """A delivery was just written: look now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop delivering. Attempts in flight get :attr:`close_seconds` to finish and store their outcome (a
        cancelled one would leave its delivery leased to a gateway that is gone); then this gateway's remaining
        claims are released, so another gateway delivers them now. Should the store fail here, they come back
        due when their lease ends, as after a crash."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=self.close_seconds)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        try:
            released = await self._store.release_webhooks(self.owner, now=self._clock())
        except StoreUnavailable:
            log.warning("webhook outbox: claims not released (store unreachable); they are due after the lease")
            return
        if released:
            log.warning("webhook outbox: %d deliveries still claimed at the stop released to other gateways", released)

    async def _run(self) -> None:
        while not (self._closing or cancel_requested()):
            try:
                claimed = await self.deliver_due()
                self._reachable = True
            except StoreUnavailable:
                claimed = 0
                if self._reachable:
                    log.warning("webhook outbox unreachable in the store; deliveries wait until it is back")
                self._reachable = False
            if claimed < BATCH:  # a full batch: more may be due right now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                self._wake.clear()

    async def deliver_due(self) -> int:
        """Claim the due deliveries, post them concurrently, store each outcome; how many were claimed."""
        claimed = await self._store.claim_webhooks(self.owner, now=self._clock(), lease=LEASE_SECONDS, limit=BATCH)
        for outcome in await asyncio.gather(*(self._attempt(d) for d in claimed)):
            if not await self._store.finish_webhook(outcome, self.owner):
                log.warning("webhook %s: lease lost before its outcome was stored; it will be sent again", outcome.id)
        return len(claimed)

    async def _attempt(self, delivery: WebhookDelivery) -> WebhookDelivery:
        """Post once; the delivery as it stands afterwards (delivered, pending with its next time, or failed)."""
        timestamp = int(self._clock())
        headers = {"Content-Type": "application/json", "X-Agent-Gateway-Event": "escalation.created",
                   "Webhook-Id": delivery.id, "Webhook-Timestamp": str(timestamp)}  # fmt: skip
        secret = self._environ.get(delivery.secret_env, "") if delivery.secret_env else ""
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret.encode(), timestamp, delivery.body)
        attempts = delivery.attempts + 1
        try:
            timeout = aiohttp.ClientTimeout(total=ATTEMPT_SECONDS)
            async with self._session.post(delivery.url, data=delivery.body, headers=headers, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return replace(delivery, status="delivered", attempts=attempts, finished_at=self._clock())
                error = f"answered {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:  # aiohttp's messages may quote the URL
            error = f"{type(exc).__name__}: {exc}".replace(delivery.url, shown_url(delivery.url))
        now = self._clock()
        if attempts >= delivery.max_attempts or now + backoff(attempts) > delivery.give_up_at:
            log.error("escalation %s: webhook gave up after %d attempts (%s)", delivery.item_id, attempts, error)
            return replace(delivery, status="failed", attempts=attempts, last_error=error, finished_at=now)
        log.warning("escalation %s: webhook attempt %d failed (%s)", delivery.item_id, attempts, error)
        return replace(delivery, attempts=attempts, last_error=error, next_at=now + backoff(attempts))
