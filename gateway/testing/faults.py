"""Faults an agent can commit, each one a small object that either reshapes the agent's normal answer or changes
how it is delivered; :class:`~gateway.testing.agent.FaultyAgent` applies them per call or by schedule.

Why objects and not flags: a pipeline test reads as a script of what goes wrong
(``schedule=[Fault.truncated_json(), None, Fault.status(503, retry_after=1)]``), and the README's fault-kit table
gives each fault's gateway outcome (``tests/test_faultkit.py`` holds the gateway to it).

Body faults address the answer by JSON pointer (RFC 6901): ``Fault.missing("/draft/title")`` removes that member
from whatever the agent would have answered. A pointer that names nothing in the answer is a mistake in the test,
reported as :class:`FaultSetupError` when the agent closes rather than silently answering something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from aiohttp import web

from gateway.jsonpointer import MISSING, join, resolve, tokens

Pause = Callable[[float | None], Awaitable[None]]
"""Wait ``seconds`` (``None``: until the agent closes); returns early when the agent closes."""


class FaultSetupError(AssertionError):
    """A fault could not be applied to the agent's answer (e.g. its pointer names nothing there)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What the agent sends: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_reply(status: int, document: Any) -> Reply:
    return Reply(status, orjson.dumps(document))


async def plain_send(request: web.Request, reply: Reply, pause: Pause) -> web.StreamResponse:
    """The normal delivery: one response with ``Content-Length``."""
    return web.Response(status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type,
                                                                       **reply.headers})  # fmt: skip


class Fault:
    """One misbehaviour. :meth:`shape` turns the normal answer (the parsed document and its reply) into the
    faulty reply; :meth:`send` delivers a reply. Subclasses override one or the other."""

    name = "fault"

    def shape(self, document: Any, reply: Reply) -> Reply:
        return reply

    async def send(self, request: web.Request, reply: Reply, pause: Pause) -> web.StreamResponse:
        return await plain_send(request, reply, pause)

    def __repr__(self) -> str:
        shown = {k: v for k, v in vars(self).items() if k != "name" and not k.startswith("_") and v is not None}
        return f"Fault.{self.name}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    # The constructors a test uses: Fault.truncated_json(), Fault.status(503, retry_after=1), ...

    @staticmethod
    def delay(seconds: float) -> Fault:
        """Answer normally after ``seconds``."""
        return _Delay(seconds)

    @staticmethod
    def hang() -> Fault:
        """Never answer: hold the connection until the client gives up (or the agent closes)."""
        return _Hang()

    @staticmethod
    def drop_mid_body() -> Fault:
        """Send the head (with the full ``Content-Length``) and half the body, then cut the connection."""
        return _DropMidBody()

    @staticmethod
    def status(status: int = 503, *, retry_after: float | str | None = None, body: Any = None) -> Fault:
        """Answer ``status`` (a 5xx by default) with a JSON error body, with ``Retry-After`` when given."""
        return _Status(status, None if retry_after is None else str(retry_after), body)

    @staticmethod
    def truncated_json() -> Fault:
        """The normal answer cut in half (``Content-Length`` matches what is sent: the HTTP message is whole,
        the JSON is not), as a model cut off by its token limit emits it."""
        return _Truncated()

    @staticmethod
    def wrong_type(pointer: str, value: Any = MISSING) -> Fault:
        """The value at ``pointer`` replaced by ``value``, by default one of another JSON type."""
        return _Edit("wrong_type", pointer, value)

    @staticmethod
    def missing(pointer: str) -> Fault:
        """The member (or array item) at ``pointer`` removed."""
        return _Edit("missing", pointer)

    @staticmethod
    def extra(pointer: str, value: Any = "unexpected") -> Fault:
        """A member added at ``pointer`` (its parent must be an object), holding ``value``."""
        return _Edit("extra", pointer, value)

    @staticmethod
    def stale_context(pointer: str, version: float | None = None) -> Fault:
        """The artifact version at ``pointer`` replaced by an older one (``version``, default one less): the
        agent hands on a stale artifact, which the *next* handoff consuming it is refused for (409)."""
        return _Edit("stale_context", pointer, MISSING if version is None else version)

    @staticmethod
    def huge(size: int = 16 * 1024 * 1024, *, pointer: str = "/padding") -> Fault:
        """The normal answer with a ``size``-byte string added at ``pointer`` (default: past the gateway's
        10 MiB ``limits.max_body_bytes``)."""
        return _Edit("huge", pointer, "x" * size)

    @staticmethod
    def slow_drip(chunk: int = 1, interval: float = 0.01) -> Fault:
        """The normal answer trickled ``chunk`` bytes at a time, ``interval`` seconds apart."""
        return _SlowDrip(chunk, interval)

    @staticmethod
    def content_type(content_type: str = "text/plain") -> Fault:
        """The normal body under another ``Content-Type``."""
        return _ContentType(content_type)

    @staticmethod
    def invalid_utf8() -> Fault:
        """The normal answer with bytes that are not UTF-8 inside its first string (JSON must be UTF-8)."""
        return _InvalidUtf8()


class _Delay(Fault):
    name = "delay"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def send(self, request: web.Request, reply: Reply, pause: Pause) -> web.StreamResponse:
        await pause(self.seconds)
        return await plain_send(request, reply, pause)


class _Hang(Fault):
    name = "hang"

    async def send(self, request: web.Request, reply: Reply, pause: Pause) -> web.StreamResponse:
        """Wait until the client gives up (aiohttp then cancels this handler) or the agent closes, which cuts
        the connection: a hung agent never answers."""
        await pause(None)
        _cut(request)
        return web.Response(status=599)


class _DropMidBody(Fault):
    name = "drop_mid_body"

    async def send(self, request: web.Request, reply: Reply, pause: Pause) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type})
        response.content_length = len(reply.body)
        await response.prepare(request)
        await response.write(reply.body[: len(reply.body) // 2])
        _cut(request)
        return response


def _cut(request: web.Request) -> None:
    """Close the connection abruptly (RST, no orderly end of the HTTP message)."""
    if request.transport is not None:
        request.transport.abort()


class _Status(Fault):
    name = "status"

    def __init__(self, status: int, retry_after: str | None, body: Any) -> None:
        self.code, self.retry_after, self.body = status, retry_after, body

    def shape(self, document: Any, reply: Reply) -> Reply:
        body = self.body if self.body is not None else {"error": f"injected {self.code}"}
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        return Reply(self.code, orjson.dumps(body), headers=headers)


class _Truncated(Fault):
    name = "truncated_json"

    def shape(self, document: Any, reply: Reply) -> Reply:
        return replace(reply, body=reply.body[: max(1, len(reply.body) // 2)])


class _ContentType(Fault):
    name = "content_type"

    def __init__(self, content_type: str) -> None:
        self.media_type = content_type

    def shape(self, document: Any, reply: Reply) -> Reply:
        return replace(reply, content_type=self.media_type)


class _InvalidUtf8(Fault):
    name = "invalid_utf8"

    def shape(self, document: Any, reply: Reply) -> Reply:
        quote = reply.body.find(b'"')
        at = quote + 1 if quote >= 0 else 0
        return replace(reply, body=reply.body[:at] + b"\xff\xfe" + reply.body[at:])


class _SlowDrip(Fault):
    name = "slow_drip"

    def __init__(self, chunk: int, interval: float) -> None:
        if chunk < 1:
            raise ValueError("slow_drip needs chunk >= 1")
        self.chunk, self.interval = chunk, interval

    async def send(self, request: web.Request, reply: Reply, pause: Pause) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type,
                                                                    **reply.headers})  # fmt: skip
        response.content_length = len(reply.body)
        await response.prepare(request)
        for start in range(0, len(reply.body), self.chunk):
            if start:
                await pause(self.interval)
            await response.write(reply.body[start : start + self.chunk])
        await response.write_eof()
        return response


def _other_type(value: Any) -> Any:
    """A value of a different JSON type than ``value`` (what a confused model puts in a typed slot)."""
    if isinstance(value, bool) or value is None:
        return "yes"
    if isinstance(value, int | float):
        return f"{value} (as text)"
    if isinstance(value, str):
        return 12345
    return "[object]" if isinstance(value, dict) else {"items": value}


class _Edit(Fault):
    """A fault that edits the parsed answer at a JSON pointer; the answer must be JSON."""

    def __init__(self, name: str, pointer: str, value: Any = MISSING) -> None:
        self.name, self.pointer, self.value = name, pointer, value
        self._parts = tokens(pointer)
        if not self._parts:
            raise ValueError(f"Fault.{name} needs a pointer below the root, got {pointer!r}")

    def __repr__(self) -> str:
        shown = "" if self.value is MISSING else f", {self.value!r}"[:60]
        return f"Fault.{self.name}({self.pointer!r}{shown})"

    def shape(self, document: Any, reply: Reply) -> Reply:
        edited = copy.deepcopy(document)
        parent = resolve(edited, join(self._parts[:-1]))
        last = self._parts[-1]
        if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            key: Any = int(last)
        elif isinstance(parent, dict) and (last in parent or self.name in ("extra", "huge")):
            key = last
        else:
            raise FaultSetupError(f"{self!r}: the answer has nothing at {self.pointer} to edit ({document!r:.80})")
        if self.name == "missing":
            del parent[key]
        else:
            parent[key] = self._new_value(parent[key] if self.name not in ("extra", "huge") else None)
        return replace(reply, body=orjson.dumps(edited))

    def _new_value(self, old: Any) -> Any:
        if self.value is not MISSING:
            return self.value
        if self.name == "wrong_type":
            return _other_type(old)
        if isinstance(old, int | float) and not isinstance(old, bool):  # stale_context: one version back
            return old - 1
        raise FaultSetupError(f"{self!r}: the version there is {old!r}, not a number; give the stale version")


async def sleep_or_close(closing: asyncio.Event, seconds: float | None) -> None:
    """:data:`Pause` for an agent whose ``closing`` event ends every wait."""
    if seconds is None:
        await closing.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(closing.wait(), seconds)
