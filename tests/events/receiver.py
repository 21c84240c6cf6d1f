"""A real HTTP server on loopback that receives outgoing events (uvicorn + Starlette).

Each request is recorded with its exact body and headers; what it answers is scripted:
a queue of status codes (``"hang"`` holds the request until the client gives up, i.e.
the delivery times out), then 200 for everything else.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    url: str
    script: list[int | str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int) -> list[Received]:
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.received) >= count), timeout=30
            )
        return self.received


@asynccontextmanager
async def running_receiver(path: str = "/hooks") -> AsyncIterator[Receiver]:
    # The socket listens before the server runs: a request sent at once waits in the
    # backlog, so nothing has to wait for the server to start.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    receiver = Receiver(url=f"http://127.0.0.1:{port}{path}")

    async def hook(request: Request) -> Response:
        body = await request.body()
        async with receiver.arrived:
            receiver.received.append(Received(body, dict(request.headers)))
            receiver.arrived.notify_all()
        answer = receiver.script.pop(0) if receiver.script else 200
        if answer == "hang":
            await receiver.release.wait()
            return Response(status_code=200)
        if answer == 302:
            return Response(status_code=302, headers={"Location": "http://127.0.0.1:1/x"})
        return Response(b"x" * 5000 if answer == 500 else b"ok", status_code=int(answer))

    app = Starlette(routes=[Route(path, hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        await task
        listener.close()
