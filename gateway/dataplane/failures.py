"""How a failed attempt and a failed handoff travel up the chain: raised by the stage that sees them, caught by
the stage that decides what to do (attempts decide on retries, recovery on the final answer)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from gateway.contracts.document import Action
from gateway.errors import GatewayError
from gateway.outcomes import Verdict


@dataclass(frozen=True, slots=True)
class BufferedResponse:
    """An agent's answer read in full, kept so a final ``reject`` can still relay it as it was."""

    status: int
    reason: str | None
    headers: CIMultiDict[str]
    body: bytes

    def to_web(self) -> web.Response:
        return web.Response(body=self.body, status=self.status, reason=self.reason, headers=self.headers)


class AttemptFailed(Exception):
    """One attempt did not produce an answer to relay; ``condition`` is the failure-modes key it maps to."""

    def __init__(
        self, condition: Verdict, error: GatewayError, *, retry_after: float | None = None,
        response: BufferedResponse | None = None,
    ) -> None:  # fmt: skip
        super().__init__(condition.value)
        self.condition = condition
        self.error = error
        self.retry_after = retry_after
        self.response = response


class Failure(Exception):
    """The handoff failed for good; ``action`` is what recovery does about it (reject, escalate, fallback)."""

    def __init__(self, failed: AttemptFailed, action: Action, attempts: int) -> None:
        super().__init__(failed.condition.value)
        self.condition = failed.condition
        self.error = failed.error
        self.response = failed.response
        self.action = action
        self.attempts = attempts
