"""The incremental SSE parser: the WHATWG rules, chunking, the size limit, and round trips with the serializer."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols.sse import (
    NO_SENTINELS,
    Event,
    EventTooLarge,
    SSEParser,
    serialize,
    should_skip,
)


def parse_all(data: bytes, cuts: list[int] | None = None, limit: int = 1 << 20) -> tuple[list[Event], SSEParser]:
    parser = SSEParser(limit)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts or [])})
    events: list[Event] = []
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(data[start:end])
    return events, parser


def test_whatwg_fields_and_line_endings() -> None:
    stream = (
        b"\xef\xbb\xbfdata: a\r\ndata:b\r\r"
        b"id: 7\nevent: x\ndata\n\n"
        b": ping\n\n"
        b"retry: 100\nretry: 1x\n\n"
        b"id: a\0b\nfoo: 1\n\n"
    )
    events, parser = parse_all(stream)
    assert [(e.event, e.data, e.id, e.has_data) for e in events] == [
        ("message", "a\nb", None, True),
        ("x", "", "7", True),
        ("message", "", None, False),
        ("message", "", None, False),
        ("message", "", None, False),
    ]
    assert events[2].comments == (" ping",)
    assert events[3].retry == 100
    assert parser.last_event_id == "7"  # an id with NUL is ignored
    assert parser.retry == 100


def test_a_crlf_split_across_chunks_is_one_line_ending() -> None:
    events, parser = parse_all(b"data: a\r\n\r\ndata: b\r\n\r\n", cuts=[8, 10, 18])
    assert [e.data for e in events] == ["a", "b"]
    assert parser.pending == b""


def test_a_bom_split_across_chunks_is_dropped() -> None:
    events, _ = parse_all(b"\xef\xbb\xbfdata: x\n\n", cuts=[1, 2])
    assert [e.data for e in events] == ["x"]


def test_an_unterminated_event_is_never_dispatched() -> None:
    events, parser = parse_all(b"data: done\n\ndata: half")
    assert [e.data for e in events] == ["done"]
    assert parser.pending == b"data: half"


def test_an_event_over_the_limit_raises_and_keeps_what_came_before() -> None:
    parser = SSEParser(max_event_bytes=32)
    with pytest.raises(EventTooLarge) as too_large:
        parser.feed(b"data: ok\n\n" + b"data: " + b"x" * 40)
    assert [e.data for e in too_large.value.events] == ["ok"]
    with pytest.raises(EventTooLarge):
        parser.feed(b"\n\n")


def test_the_limit_counts_one_event_not_the_stream() -> None:
    events, _ = parse_all(b"data: 0123456789\n\n" * 100, limit=18)
    assert len(events) == 100


def test_skip_rules() -> None:
    def event(data: str | None) -> Event:
        return parse_all(serialize(data, comments=[""] if data is None else []))[0][0]

    assert should_skip(event(None))  # keep-alive comment
    assert should_skip(event(""))  # MCP priming event
    assert should_skip(event("[DONE]"))
    assert not should_skip(event('{"a": 1}'))
    assert not should_skip(event("[DONE]"), NO_SENTINELS)


def test_serialize_refuses_what_cannot_be_written() -> None:
    assert serialize(comments=[""]) == b":\n\n"
    for bad in ({"event": "a\nb"}, {"id": "a\rb"}, {"id": "a\0"}, {"retry": -1}, {"comments": ["x\ny"]}):
        with pytest.raises(ValueError, match=r"SSE|retry"):
            serialize("x", **bad)


line = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=20)
events_st = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8"), max_size=40),
        st.one_of(st.none(), line.filter(lambda s: s != "")),
        st.one_of(st.none(), line),
        st.one_of(st.none(), st.integers(0, 10**9)),
    ),
    max_size=8,
)


@given(events_st, st.lists(st.integers(0, 10_000), max_size=12))
def test_serialize_then_parse_round_trips_at_any_chunk_boundaries(
    events: list[tuple[str, str | None, str | None, int | None]], cuts: list[int]
) -> None:
    stream = b"".join(serialize(data, event=name, id=id_, retry=retry) for data, name, id_, retry in events)
    parsed, parser = parse_all(stream, cuts)
    expected = [
        (data.replace("\r\n", "\n").replace("\r", "\n"), name or "message", id_, retry)
        for data, name, id_, retry in events
    ]
    assert [(e.data, e.event, e.id, e.retry) for e in parsed] == expected
    assert b"".join(e.raw for e in parsed) == stream
    assert parser.pending == b""


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=10), st.integers(1, 64))
def test_any_bytes_parse_without_error_except_the_size_limit(data: bytes, cuts: list[int], limit: int) -> None:
    try:
        events, parser = parse_all(data, cuts, limit)
    except EventTooLarge:
        return
    assert b"".join(e.raw for e in events) + parser.pending == data
    assert all(len(e.raw) <= limit for e in events)
    assert len(parser.pending) <= limit  # never more than the one event being read
