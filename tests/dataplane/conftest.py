"""Helpers for the stage unit tests: exchanges built on mocked requests (no sockets), policies and contracts
from their documents, a fake clock whose sleep advances it, and an in-memory SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.config import RouteSpec
from gateway.contracts.document import parse_contract
from gateway.contracts.validation import CompiledContract, compile_contract
from gateway.dataplane.exchange import Exchange
from gateway.policies.document import DEFAULT_POLICY, PolicySpec, parse_policy
from gateway.store.sqlite import SQLiteStore
from tests.conftest import contract

ROUTE = RouteSpec(name="agent", upstream="http://agent.invalid")
VALID = b'{"result":  "done"}'
"""A valid answer for :func:`contract`'s 200 schema, spaced oddly so a re-serialised copy would differ."""


def policy(**fields: Any) -> PolicySpec:
    """A policy document attached to the ``agent`` route, checked and typed as the admin API would."""
    return parse_policy({"id": "p", "attach": {"route": "agent"}, **fields})


def compiled(**overrides: Any) -> CompiledContract:
    return compile_contract(parse_contract(contract(**overrides)), 1)


class Wire:
    """The payload writer of a mocked request: what a streamed answer sent to the caller, without a socket."""

    buffer_size = 0
    output_size = 0
    length = 0

    def __init__(self) -> None:
        self.status_line = ""
        self.sent = bytearray()
        self.chunks: list[bytes] = []
        self.ended = False

    def enable_chunking(self) -> None: ...

    def enable_compression(self, *args: object, **kwargs: object) -> None: ...

    def send_headers(self) -> None: ...

    async def write_headers(self, status_line: str, headers: object) -> None:
        self.status_line = status_line

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(bytes(chunk))
        self.sent += chunk

    async def write_eof(self, chunk: bytes = b"") -> None:
        self.sent += chunk
        self.ended = True

    async def drain(self) -> None: ...


def exchange(
    method: str = "POST", *, headers: Mapping[str, str] | None = None, policy: PolicySpec = DEFAULT_POLICY,
    contract: CompiledContract | None = None, body: bytes | None = b'{"task": "t", "priority": 1}',
    wire: Wire | None = None,
) -> Exchange:  # fmt: skip
    """An exchange as the stages above the one under test leave it: routed, policy attached, body read."""
    extra: dict[str, Any] = {} if wire is None else {"writer": wire}
    done = Exchange(make_mocked_request(method, "/agent/tasks", headers=dict(headers or {}), **extra))
    done.route, done.path, done.policy, done.contract, done.request_body = ROUTE, "/tasks", policy, contract, body
    return done


@dataclass
class FakeClock:
    """``clock`` and ``sleep`` for :class:`~gateway.dataplane.attempts.Attempts`: sleeping advances the clock
    (plus ``oversleep``, as a busy loop may) and is recorded, so a test asserts the waits without waiting."""

    now: float = 1000.0
    oversleep: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds + self.oversleep


@pytest.fixture
async def store() -> AsyncIterator[SQLiteStore]:
    memory = SQLiteStore(":memory:")
    yield memory
    await memory.close()
