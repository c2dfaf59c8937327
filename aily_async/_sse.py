"""Server-Sent Events: an incremental parser of the ``text/event-stream`` format.

Pure (no I/O): feed it the body's bytes as they arrive, in chunks cut anywhere (in the middle
of a line, of a ``CRLF`` or of a UTF-8 character), and it hands back the complete events. The
framing follows the WHATWG HTML standard ("Server-sent events", the event stream
interpretation):

* lines end with ``CRLF``, ``LF`` or ``CR``; a UTF-8 byte order mark at the very start is
  dropped; undecodable bytes become U+FFFD;
* a line starting with ``:`` is a comment (keep-alives), ignored;
* ``field: value`` (one space after the colon dropped; a line with no colon is a field with an
  empty value); ``event`` sets the event's type, ``data`` lines are joined with ``\\n``, ``id``
  sets the last event id (not if it holds NUL) and ``retry`` the reconnection time (digits
  only); other fields are ignored;
* a blank line dispatches the event, unless it has no ``data`` (then it is dropped); the type
  defaults to ``message``;
* at the end of the stream an event not closed by a blank line is discarded.

The parser names no event type beyond that framing. Its buffers are bounded: a line longer
than ``max_line`` characters, or an event whose data grows past ``max_event``, raises
:class:`SSEError` instead of growing without end.
"""

from __future__ import annotations

import codecs

import attrs

__all__ = ["SSEError", "SSEEvent", "SSEParser"]


class SSEError(ValueError):
    """The event stream broke a bound of the parser (a line or an event too long)."""


@attrs.frozen
class SSEEvent:
    """One dispatched event: its type, its data (lines joined by ``\\n``), the last event id
    seen when it was dispatched, and the ``retry`` value (milliseconds) if one was set."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Turns chunks of an event stream into :class:`SSEEvent` values (module docstring)."""

    __slots__ = (
        "_data",
        "_data_size",
        "_decoder",
        "_event",
        "_last_id",
        "_line",
        "_line_size",
        "_max_event",
        "_max_line",
        "_pending_cr",
        "_retry",
        "_started",
    )

    def __init__(self, *, max_line: int = 1 << 20, max_event: int = 16 << 20) -> None:
        if max_line < 1 or max_event < 1:
            raise ValueError("max_line and max_event must be >= 1")
        self._max_line = max_line
        self._max_event = max_event
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line: list[str] = []  # the pieces of the line being read
        self._line_size = 0
        self._pending_cr = False  # the last chunk ended with CR (an LF may follow)
        self._started = False  # past the (optional) byte order mark
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream set (``None`` until one is)."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Take the next bytes of the stream; return the events they complete."""
        return self._text(self._decoder.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """The stream ended: a last line without its line break still counts, but an event
        not closed by a blank line is discarded (so this returns no event)."""
        events = self._text(self._decoder.decode(b"", final=True))
        if self._line:
            self._process("".join(self._line), events)
            self._line, self._line_size = [], 0
        self._reset_event()
        return events

    # -- lines -----------------------------------------------------------------------------

    def _text(self, text: str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if not text:
            return events
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        start, size = 0, len(text)
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                start = 1  # the LF of a CRLF cut between two chunks
        while start < size:
            cr, lf = text.find("\r", start), text.find("\n", start)
            if cr < 0 and lf < 0:
                self._grow(text[start:])
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            self._grow(text[start:end])
            line = "".join(self._line)
            self._line, self._line_size = [], 0
            self._process(line, events)
            start = end + 1
            if text[end] == "\r":
                if start == size:
                    self._pending_cr = True
                elif text[start] == "\n":
                    start += 1
        return events

    def _grow(self, piece: str) -> None:
        if not piece:
            return
        self._line.append(piece)
        self._line_size += len(piece)
        if self._line_size > self._max_line:
            raise SSEError(f"an event stream line is longer than {self._max_line} characters")

    def _process(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_event:
                raise SSEError(f"an event's data is longer than {self._max_event} characters")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(
                SSEEvent(
                    event=self._event or "message",
                    data="\n".join(self._data),
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._reset_event()

    def _reset_event(self) -> None:
        self._event = ""
        self._data = []
        self._data_size = 0
