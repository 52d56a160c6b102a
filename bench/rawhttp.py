"""A lean HTTP/1.1 keep-alive client for the load generators (loopback only).

The load generators share two cores with the system they measure, so their own cost per
request shows up as the system's latency. httpx spends ~0.8 ms of CPU per request here; this
spends a small fraction of that. It speaks only what the benches need: requests with a body
of known length, answers with Content-Length.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        reused = self._writer is not None
        try:
            return await self._request(method, path, body, headers)
        except ConnectionError:
            if not reused:
                raise
            # the server closed an idle keep-alive connection (uvicorn does after 5 s) before
            # reading this request: it never ran, so send it again on a new connection
            return await self._request(method, path, body, headers)

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self._writer.write(head.encode() + body)
        try:
            status_line = await self._reader.readline()
            if not status_line:
                raise ConnectionError("server closed the connection before answering")
            status = int(status_line.split(b" ", 2)[1])
            length, close = 0, False
            while (line := await self._reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    raise ValueError("chunked answers are not supported here")
            data = await self._reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Pool:
    """`size` keep-alive connections; a request waits for a free one."""

    def __init__(self, url: str, size: int) -> None:
        u = urlsplit(url)
        if u.hostname != "127.0.0.1" or u.port is None:
            raise ValueError(f"loopback only: {url}")
        self._all = [Connection(u.hostname, u.port) for _ in range(size)]
        self._idle: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()
        for conn in self._all:
            self._idle.put_nowait(conn)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = await self._idle.get()
        try:
            return await conn.request(method, path, body, headers)
        finally:
            self._idle.put_nowait(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.close()


async def sse_lines(url: str, path: str, token: str) -> AsyncIterator[str]:
    """The lines of a server-sent event stream, over a bare HTTP/1.1 connection.

    The dispatch bench's phones: 320 of them in the bench's own process, on the same two cores
    as the system under test, so they are kept cheap (httpx costs several times more)."""
    u = urlsplit(url)
    assert u.hostname == "127.0.0.1", "loopback only"
    assert u.port
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream {path}: {status!r}")
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip().lower()
        assert headers.get("transfer-encoding") == "chunked", headers
        buf = b""
        while size := int((await reader.readline()).strip() or b"0", 16):
            buf += (await reader.readexactly(size + 2))[:-2]
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                yield raw.decode().rstrip("\r")
    finally:
        writer.close()
