"""The Server-Sent Events parser (``aily_async._sse``): framing, chunking, bounds; and the
assumptions that take text and ids out of an event's data (``event_text``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aily_async._agent_stream import event_text
from aily_async._sse import SSEError, SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    """Every event of the stream fed as ``chunks``, then closed."""
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


STREAM = (
    b"\xef\xbb\xbf: a comment, then two events\n"
    b"id: 1\n"
    b"event: chat.delta\n"
    b'data: {"text":\n'
    b'data:  "h\xc3\xa9llo"}\n'
    b"\n"
    b":keep-alive\r\n"
    b"data:second\r\n"
    b"data: line\r\n"
    b"\r\n"
)
EXPECTED = [
    SSEEvent(event="chat.delta", data='{"text":\n "héllo"}', id="1"),
    SSEEvent(event="message", data="second\nline", id="1"),
]


def test_events_with_multi_line_data_comments_ids_and_a_bom() -> None:
    """Data lines are joined with ``\\n``, comments are skipped, the type defaults to
    ``message``, the last id carries over, a leading BOM is dropped, CRLF ends lines."""
    assert parse(STREAM) == EXPECTED


def test_every_split_of_the_stream_gives_the_same_events() -> None:
    """Cutting the bytes anywhere (mid-line, mid-CRLF, mid-UTF-8 character) changes nothing."""
    for cut in range(len(STREAM) + 1):
        assert parse(STREAM[:cut], STREAM[cut:]) == EXPECTED, cut
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=8))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    """Property: any number of cuts at any places gives the same events."""
    points = sorted({0, len(STREAM), *cuts})
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert parse(*chunks) == EXPECTED


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending(newline: bytes) -> None:
    """LF, CR and CRLF each end a line; a CR at a chunk's end waits for a possible LF."""
    raw = newline.join([b"event: x", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert parse(raw) == [SSEEvent("x", "a\nb"), SSEEvent("message", "c")]
    middle = raw.index(b"data: c")
    assert parse(raw[:middle], raw[middle:]) == [SSEEvent("x", "a\nb"), SSEEvent("message", "c")]


def test_field_rules() -> None:
    """One space after the colon is dropped (not two); a line without a colon is a field with
    an empty value; unknown fields are ignored; an id with NUL is ignored; ``retry`` takes
    digits only; an event with no data is not dispatched and resets the type."""
    raw = (
        b"data:  two spaces\n\n"
        b"data\n\n"
        b"foo: bar\nid: a\x00b\ndata: x\n\n"
        b"event: lonely\n\n"
        b"retry: 15x\nretry: 3000\ndata: y\n\n"
    )
    assert parse(raw) == [
        SSEEvent(data=" two spaces"),
        SSEEvent(data=""),
        SSEEvent(data="x"),
        SSEEvent(data="y", retry=3000),
    ]


def test_an_empty_id_resets_the_last_event_id() -> None:
    """``id:`` with no value sets the last event id to the empty string."""
    parser = SSEParser()
    assert parser.feed(b"id: 7\ndata: a\n\nid\ndata: b\n\n") == [
        SSEEvent(data="a", id="7"),
        SSEEvent(data="b", id=""),
    ]
    assert parser.last_event_id == ""


def test_an_event_cut_off_by_the_end_is_discarded() -> None:
    """At the end of the stream an event without its blank line is dropped, even when its
    last line has no line break."""
    assert parse(b"data: done\n\ndata: partial\n") == [SSEEvent(data="done")]
    assert parse(b"data: done\n\ndata: partial") == [SSEEvent(data="done")]


def test_undecodable_bytes_become_replacement_characters() -> None:
    """Bytes that are not UTF-8 never raise: they read as U+FFFD."""
    assert parse(b"data: \xff\xfe!\n\n") == [SSEEvent(data="\ufffd\ufffd!")]


def test_a_line_longer_than_the_bound_raises() -> None:
    """A line over ``max_line`` characters raises, even when it arrives in small pieces."""
    parser = SSEParser(max_line=100)
    assert parser.feed(b"data: " + b"a" * 90) == []
    with pytest.raises(SSEError, match="longer than 100"):
        parser.feed(b"a" * 20)


def test_an_event_larger_than_the_bound_raises() -> None:
    """Data lines that add up past ``max_event`` raise, each line being short."""
    parser = SSEParser(max_line=100, max_event=250)
    with pytest.raises(SSEError, match="data is longer than 250"):
        parser.feed(b"data: " + b"x" * 90 + b"\n" * 1 + (b"data: " + b"x" * 90 + b"\n") * 2)


def test_bounds_are_positive() -> None:
    """A parser with a bound below 1 is refused."""
    with pytest.raises(ValueError, match=">= 1"):
        SSEParser(max_line=0)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("plain json string", "plain json string"),
        ({"text": "a"}, "a"),
        ({"delta": "b"}, "b"),
        ({"delta": {"text": "c"}}, "c"),
        ({"delta": {"content": "d"}}, "d"),
        ({"content": "e"}, "e"),
        ({"content": [{"type": "text", "text": "f"}, {"type": "image"}, {"text": "g"}]}, "fg"),
        ({"data": {"text": "h"}}, "h"),
        ({"message": {"content": [{"text": "i"}]}}, "i"),
        ({"status": "IN_PROGRESS"}, ""),
        ({"text": 12}, ""),
        ([{"text": "list data"}], ""),
        (None, ""),
        (3, ""),
    ],
)
def test_event_text_assumptions(data: object, text: str) -> None:
    """Where an event's text is looked for (the documented assumptions), and what carries
    none."""
    assert event_text(data) == text
