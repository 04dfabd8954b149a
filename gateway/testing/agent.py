"""A fault-injecting agent: one real aiohttp server on a loopback port that answers like a well-behaved agent
except when a scheduled :class:`~gateway.testing.faults.Fault` says otherwise, and records everything it received.

Use it from any test framework::

    async with FaultyAgent(answer={"draft": {"title": "t"}}, schedule=[Fault.truncated_json()]) as writer:
        ...  # point a gateway route (or your own client) at writer.url

    with FaultyAgent(answer={"ok": True}, schedule=every(3, Fault.status(503))).in_thread() as agent:
        ...  # synchronous tests: the server runs on its own event loop in a background thread

Which fault applies to call *n* (0-based): a fault queued with :meth:`FaultyAgent.inject` first, else the
schedule (a sequence, whose entry *n* applies and past whose end calls are normal, or a function of *n*, see
:func:`every` and :func:`first`); ``None`` is a normal answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from gateway.testing.faults import Fault, FaultSetupError, Reply, json_reply, plain_send, sleep_or_close

Schedule = Callable[[int], Fault | None]


def every(n: int, fault: Fault) -> Schedule:
    """Every ``n``-th call faulty (calls n-1, 2n-1, ...: the first n-1 calls are normal)."""
    if n < 1:
        raise ValueError("every(n, ...) needs n >= 1")
    return lambda call: fault if (call + 1) % n == 0 else None


def first(n: int, fault: Fault) -> Schedule:
    """The first ``n`` calls faulty, then normal answers."""
    return lambda call: fault if call < n else None


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the agent received it, and the fault (if any) it answered with."""

    call: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    fault: Fault | None
    at: float
    """``time.monotonic()`` when the request arrived (e.g. to check a client waited as ``Retry-After`` said)."""

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is empty or not JSON."""
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None


Answer = Any | Callable[[Received], Any]
"""The normal answer: a JSON document, or a function of the request that returns one."""


class FaultyAgent:
    """An agent on ``127.0.0.1:<free port>`` answering ``answer`` with ``status``, faults per ``schedule``."""

    def __init__(
        self, answer: Answer = None, *, status: int = 200, schedule: Sequence[Fault | None] | Schedule = ()
    ) -> None:
        self.answer = answer if answer is not None else {}
        self.status = status
        self.schedule = schedule
        self.received: list[Received] = []
        self.errors: list[FaultSetupError] = []
        self._injected: deque[Fault | None] = deque()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the agent is not running: use `async with FaultyAgent(...)` or start() first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def calls(self) -> int:
        return len(self.received)

    def inject(self, *faults: Fault | None) -> None:
        """Queue ``faults`` for the next calls, before whatever the schedule says."""
        self._injected.extend(faults)

    def _fault_for(self, call: int) -> Fault | None:
        if self._injected:
            return self._injected.popleft()
        if callable(self.schedule):
            return self.schedule(call)
        return self.schedule[call] if call < len(self.schedule) else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = len(self.received)
        fault = self._fault_for(call)
        path, _, query = request.raw_path.partition("?")
        received = Received(call, request.method, path, query, dict(request.headers), body, fault, time.monotonic())
        self.received.append(received)
        document = self.answer(received) if callable(self.answer) else self.answer
        reply = json_reply(self.status, document)
        if fault is None:
            return await plain_send(request, reply, self._pause)
        try:
            reply = fault.shape(document, reply)
        except FaultSetupError as exc:
            self.errors.append(exc)
            return await plain_send(request, Reply(599, str(exc).encode(), "text/plain"), self._pause)
        return await fault.send(request, reply, self._pause)

    async def _pause(self, seconds: float | None) -> None:
        await sleep_or_close(self._closing, seconds)

    async def start(self) -> FaultyAgent:
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        if self._runner is not None:
            raise RuntimeError("this FaultyAgent is already serving")
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        except BaseException:  # nothing is left serving half-started (``async with`` never reaches close())
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Stop serving (ending every hang and delay at once); raise the first fault that could not be applied."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.errors:
            raise self.errors[0]

    async def __aenter__(self) -> FaultyAgent:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @contextmanager
    def in_thread(self) -> Iterator[FaultyAgent]:
        """Serve from a background thread with its own event loop, for synchronous tests."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="faulty-agent", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result()
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.close(), loop).result()
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
