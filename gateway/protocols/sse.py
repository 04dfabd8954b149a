"""Server-Sent Events: an incremental parser (WHATWG HTML §9.2.6) and a serializer.

Streamed answers (MCP tool results, A2A task updates, OpenAI ``stream: true`` chunks) are checked one event at a
time as they pass, so the parser takes the byte chunks as they arrive and hands back each *complete* event,
holding at most the one event still being read. That event is bounded by ``max_event_bytes``: an upstream that
never ends its event raises :class:`EventTooLarge` instead of growing the buffer (the whole-body limit does not
apply to a stream that may legitimately last hours).

Every block up to its blank line is returned, including comment-only keep-alives and blocks with no ``data``
(the spec dispatches no event for those), each with its exact ``raw`` bytes: concatenating the ``raw`` of all
events, then :attr:`SSEParser.pending`, gives back the input byte for byte, so a relay can forward what it
checked without re-serialising it. :func:`should_skip` says which events carry nothing to check.

Parsing follows the spec: UTF-8 with replacement, one leading BOM dropped, lines end at CRLF, LF or CR (a CR at
the end of a chunk followed by LF in the next is one line ending), ``field: value`` with one leading space
removed, ``data`` lines joined with ``\\n``, ``id`` ignored when it contains NUL, ``retry`` only when all ASCII
digits (and at most 18 of them), unknown fields ignored, an unterminated last event never dispatched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

BOM = b"\xef\xbb\xbf"
DONE = "[DONE]"
"""OpenAI's end-of-stream sentinel: ``data: [DONE]`` after the last chunk; not JSON."""
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")
_MAX_RETRY_DIGITS = 18
"""A longer ``retry`` (over 31 million years) is ignored rather than converted (and never overflows)."""
_BREAK = re.compile(r"\r\n|\r|\n")


class EventTooLarge(ValueError):
    """One event (its raw bytes up to and including its blank line) exceeds the parser's limit."""

    def __init__(self, limit: int, events: Iterable[Event] = ()) -> None:
        super().__init__(f"a Server-Sent Event exceeds the limit of {limit} bytes")
        self.limit = limit
        self.events = tuple(events)
        """The complete events the same chunk held before the oversized one (still to be relayed)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One block of an event stream, up to and including the blank line that ends it.

    ``id`` is the ``id`` field of *this* block (``None`` when absent); the id a client would report as
    ``Last-Event-ID`` persists across blocks and is :attr:`SSEParser.last_event_id`. ``has_data`` is whether any
    ``data`` line was present: the spec dispatches only those (``data`` is then ``""`` for a bare ``data:``).
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: tuple[str, ...] = ()
    has_data: bool = False
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class SkipRule:
    """Which events carry nothing to check: no ``data`` (comments, keep-alives, id/retry-only blocks), data
    that is empty or only whitespace (MCP's priming event), or data equal to one of ``sentinels``."""

    sentinels: frozenset[str] = frozenset({DONE})
    skip_empty: bool = True


OPENAI_SKIP = SkipRule()
NO_SENTINELS = SkipRule(frozenset())


def should_skip(event: Event, rule: SkipRule = OPENAI_SKIP) -> bool:
    """Whether ``event`` is relayed unchecked under ``rule``."""
    if not event.has_data:
        return True
    if rule.skip_empty and not event.data.strip():
        return True
    return event.data in rule.sentinels


class SSEParser:
    """Incremental parser: :meth:`feed` byte chunks, get back the blocks they complete.

    After :class:`EventTooLarge` the stream is unusable (the rest of the oversized event cannot be told apart
    from what follows it); every later :meth:`feed` raises it again.
    """

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self.last_event_id = ""
        self.retry: int | None = None
        self._line = bytearray()  # bytes of the current, unterminated line
        self._raw = bytearray()  # raw bytes of the current block's complete lines
        self._fields = _Block()
        self._at_start = True  # no byte of the stream seen yet (BOM check)
        self._after_cr = False  # the last line ended with a CR: a leading LF completes that line ending
        self._failed = False

    @property
    def pending(self) -> bytes:
        """Raw bytes of the event still being read (never dispatched if the stream ends now)."""
        return bytes(self._raw + self._line)

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse ``chunk``; return the blocks it completes, in order."""
        if self._failed:
            raise EventTooLarge(self.max_event_bytes)
        if not chunk:
            return []
        events: list[Event] = []
        position = 0
        if self._after_cr and chunk[:1] == b"\n":
            # The LF of a CRLF split across chunks ends the line already processed; its raw byte goes with the
            # current block (or, when the CR ended a block, starts the next one).
            self._check_size(1, events)
            self._raw += b"\n"
            position = 1
        self._after_cr = False
        for match in _LINE_END.finditer(chunk, position):
            self._line += chunk[position : match.start()]
            self._check_size(len(match.group()), events)
            line = bytes(self._line)
            self._raw += self._line + match.group()
            self._line.clear()
            position = match.end()
            self._after_cr = match.group() == b"\r" and position == len(chunk)
            if event := self._process(line):
                events.append(event)
        self._line += chunk[position:]
        self._check_size(0, events)
        return events

    def _check_size(self, extra: int, events: list[Event]) -> None:
        if len(self._raw) + len(self._line) + extra > self.max_event_bytes:
            self._failed = True
            raise EventTooLarge(self.max_event_bytes, events)

    def _process(self, line_bytes: bytes) -> Event | None:
        if self._at_start:
            self._at_start = False
            line_bytes = line_bytes.removeprefix(BOM)
        line = line_bytes.decode("utf-8", errors="replace")
        if line:
            self._fields.take(line)
            return None
        event = self._fields.event(bytes(self._raw))
        if event.id is not None:
            self.last_event_id = event.id
        if event.retry is not None:
            self.retry = event.retry
        self._raw.clear()
        self._fields = _Block()
        return event


class _Block:
    """The fields of the block being read."""

    __slots__ = ("comments", "data", "empty", "event_type", "id", "retry")

    def __init__(self) -> None:
        self.event_type = ""
        self.data: list[str] = []
        self.id: str | None = None
        self.retry: int | None = None
        self.comments: list[str] = []
        self.empty = True

    def take(self, line: str) -> None:
        self.empty = False
        if line.startswith(":"):
            self.comments.append(line[1:])
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event_type = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.id = value
        elif name == "retry" and len(value) <= _MAX_RETRY_DIGITS and _DIGITS.fullmatch(value):
            self.retry = int(value)

    def event(self, raw: bytes) -> Event:
        return Event(
            event=self.event_type or "message",
            data="\n".join(self.data),
            id=self.id,
            retry=self.retry,
            comments=tuple(self.comments),
            has_data=bool(self.data),
            raw=raw,
        )


def serialize(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comments: Iterable[str] = (),
) -> bytes:
    """One event as UTF-8 bytes ending with its blank line; ``data`` is split into ``data:`` lines at any line
    break (``None``: no data line, e.g. a keep-alive ``serialize(comments=[""])``, which is ``:\\n\\n``).

    Raises ``ValueError`` for values that cannot be written: a line break in ``event``, ``id`` or a comment, a
    NUL in ``id``, a negative ``retry``.
    """
    lines: list[str] = []
    for comment in comments:
        lines.append(":" + _single_line(comment, "comment"))
    if event is not None:
        lines.append("event: " + _single_line(event, "event"))
    if id is not None:
        if "\0" in id:
            raise ValueError("an SSE id cannot contain NUL")
        lines.append("id: " + _single_line(id, "id"))
    if retry is not None:
        if retry < 0:
            raise ValueError("retry is a non-negative number of milliseconds")
        lines.append(f"retry: {retry}")
    if data is not None:
        lines.extend("data: " + part for part in _BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def _single_line(value: str, what: str) -> str:
    if _BREAK.search(value):
        raise ValueError(f"an SSE {what} cannot contain a line break")
    return value
