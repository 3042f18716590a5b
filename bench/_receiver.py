"""A minimal local webhook receiver for bench/delivery.py: answers 204 to every request.

    python bench/_receiver.py PORT_FILE     # binds 127.0.0.1:0, writes the port, serves

HTTP/1.1 keep-alive, parsed by hand on asyncio so the receiver costs next to nothing
and never limits what it measures. Runs in its own process (its own CPU and GIL).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPLY = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class Receiver(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            total = end + 4 + length
            if len(self.buf) < total:
                return
            del self.buf[:total]
            self.transport.write(REPLY)


async def main(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    port_file.write_text(str(port))  # noqa: ASYNC240 - once, a few bytes, before serving
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
