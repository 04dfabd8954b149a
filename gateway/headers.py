"""Every HTTP header name the gateway reads or writes, in one place.

Convention: what the gateway *tells* a caller about a handoff is ``X-Contract-Verdict``, ``X-Checkpoint``,
``X-Fallback``, ``X-Escalation-*`` (one field per fact, values from :mod:`gateway.outcomes`); what a caller or an
agent *tells* the gateway is ``X-Agent-Name``, ``X-Run-Id``, ``X-Step``, ``X-Request-Timeout-Ms`` and the IETF
``Idempotency-Key``; webhooks the gateway sends are signed under ``X-Agent-Gateway-*``. The names predate this
module and are kept: agents and pipelines already send and read them.
"""

from __future__ import annotations

AGENT = "X-Agent-Name"
"""The calling agent's name (source of the handoff)."""
RUN = "X-Run-Id"
"""The pipeline run a handoff belongs to (also W3C baggage ``run.id``); echoed on every answer."""
STEP = "X-Step"
"""The step's name within a run (for checkpoints keyed by run + step, and for timelines)."""
DEADLINE = "X-Request-Timeout-Ms"
"""Milliseconds the caller will wait; forwarded upstream as what is left of the deadline."""
IDEMPOTENCY_KEY = "Idempotency-Key"
VERDICT = "X-Contract-Verdict"
"""``<verdict>; contract=<id>; version=<n>[; attempts=<n>][; notes…]`` on every answer of a contracted call."""
CHECKPOINT = "X-Checkpoint"
"""``hit`` (answered from a checkpoint), ``stored`` (this answer was kept), ``bypass`` (the store failed)."""
FALLBACK = "X-Fallback"
"""``static`` or ``route:<name>`` when the answer is a policy's fallback."""
ESCALATION_ID = "X-Escalation-Id"
ESCALATION_STATUS = "X-Escalation-Status"
WEBHOOK_EVENT = "X-Agent-Gateway-Event"
WEBHOOK_SIGNATURE = "X-Agent-Gateway-Signature"
ATTEMPTS = "X-Gateway-Attempts"
"""How many times the gateway called the agent for this answer: a client that retries too knows its retries
multiply with the gateway's (3 times 3: 9 calls for one logical request)."""
RETRY_AFTER = "Retry-After"
