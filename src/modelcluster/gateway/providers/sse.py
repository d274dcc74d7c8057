"""Server-sent events from bytes in chunks of any size (the framing every provider streams in)."""

from __future__ import annotations

from modelcluster.gateway.providers.base import SSEMessage

DEFAULT_MAX_EVENT_BYTES = 4 << 20


class EventTooLarge(ValueError):
    """An event grew past the decoder's bound without ending."""


class SSEDecoder:
    """``feed`` bytes, get the events they complete; ``close`` dispatches an event the body ended inside."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        self._buffer += chunk
        messages: list[SSEMessage] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[: end + 1]
            message = self._line(line)
            if message is not None:
                messages.append(message)
        if len(self._buffer) + self._size > self.max_event_bytes:
            raise EventTooLarge(f"an event larger than {self.max_event_bytes} bytes")
        return messages

    def close(self) -> list[SSEMessage]:
        if self._buffer:
            line = bytes(self._buffer).removesuffix(b"\r")
            self._buffer.clear()
            self._line(line)
        message = self._dispatch()
        return [message] if message is not None else []

    def _line(self, line: bytes) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        text = value.removeprefix(b" ").decode("utf-8", "replace")
        if name == b"data":
            self._data.append(text)
            self._size += len(text)
        elif name == b"event":
            self._event = text
        return None

    def _dispatch(self) -> SSEMessage | None:
        if not self._data:
            self._event = ""
            return None
        message = SSEMessage(self._event or "message", "\n".join(self._data))
        self._event, self._data, self._size = "", [], 0
        return message
