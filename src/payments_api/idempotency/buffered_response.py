"""A route's response held back instead of sent, for the idempotency middleware: it
stores the answer (or releases the key) before the client may see it."""

from __future__ import annotations

from starlette.types import Message


class BufferedResponse:
    """An ASGI ``send`` that keeps what the route sends: its start message and its body,
    and whether the body finished (the last chunk came without ``more_body``)."""

    def __init__(self) -> None:
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.finished = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            self.finished = not message.get("more_body", False)

    @property
    def body(self) -> bytes:
        """The body chunks received so far, joined."""
        return b"".join(self.chunks)
