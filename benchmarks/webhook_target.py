"""A bare HTTP endpoint for the webhook benchmarks: answers every request with 204 once its
body is in, keeping the connection alive, and does nothing else. A few lines of asyncio
protocol instead of a framework, so that the endpoint is never what a benchmark measures.
Run in its own process, so the client side gets one core and the endpoint the other.

    python -m benchmarks.webhook_target PORT
"""

from __future__ import annotations

import asyncio
import sys

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: bench\r\n\r\n"


class _Endpoint(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(_NO_CONTENT)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Endpoint, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
