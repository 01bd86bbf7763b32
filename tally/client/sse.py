"""An incremental parser of ``text/event-stream`` (the WHATWG HTML standard, "Server-sent events").

Bytes go in as they arrive, in chunks split anywhere (inside a UTF-8 character,
between the CR and LF of a line end); whole events come out. What the standard
asks for, and browsers do:

* lines end in CRLF, LF or CR; a UTF-8 BOM at the very start is dropped;
* ``:`` starts a comment (keep-alives); ``field: value`` drops one space after the colon;
  a line without a colon is a field with an empty value;
* ``data`` lines join with LF; an event is dispatched at a blank line, and only if it has data;
* ``event`` names the type (``message`` when absent), ``id`` sets the last event id
  (kept for later events too; ignored if it holds NUL), ``retry`` the reconnection delay
  in milliseconds (digits only);
* an event the stream ends in the middle of is dropped.

Pure: no I/O, no HTTP library, so it is tested on byte strings alone.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

DEFAULT_TYPE = "message"


@dataclass(frozen=True)
class Message:
    """One dispatched server-sent event: its id (the last one set), type, and data text."""

    id: str
    type: str
    data: str


class SSEParser:
    """Feed it bytes with :meth:`feed`; it returns the events those bytes completed."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # text of a line not yet ended
        self._skip_lf = False  # the last chunk ended in CR: a leading LF finishes that line end
        self._at_start = True
        self._data: list[str] = []
        self._type = ""
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self.received = False  # any byte at all (keep-alives too): the connection was alive

    def feed(self, chunk: bytes) -> list[Message]:
        self.received = self.received or bool(chunk)
        text = self._decoder.decode(chunk)
        if self._at_start and text:
            text, self._at_start = text.removeprefix("\ufeff"), False
        if self._skip_lf and text:
            text, self._skip_lf = text.removeprefix("\n"), False
        events: list[Message] = []
        for line in self._lines(text):
            message = self._line(line)
            if message is not None:
                events.append(message)
        return events

    def _lines(self, text: str) -> list[str]:
        """The lines ``text`` ends (after what was pending); keeps the unended rest."""
        buffer = self._pending + text
        lines: list[str] = []
        start = 0
        index = 0
        while index < len(buffer):
            char = buffer[index]
            if char in "\r\n":
                lines.append(buffer[start:index])
                if char == "\r":
                    if index + 1 == len(buffer):
                        self._skip_lf = True  # its LF, if any, is in the next chunk
                    elif buffer[index + 1] == "\n":
                        index += 1
                start = index + 1
            index += 1
        self._pending = buffer[start:]
        return lines

    def _line(self, line: str) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Message | None:
        data, kind = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Message(id=self.last_event_id, type=kind or DEFAULT_TYPE, data="\n".join(data))
