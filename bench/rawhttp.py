"""A lean HTTP/1.1 keep-alive client for the load generators (loopback only).

The load generators share two cores with the system they measure, so their own cost per
request shows up as the system's latency. httpx spends ~0.8 ms of CPU per request here; this
spends a small fraction of that (an asyncio Protocol per connection: no stream reader, no task,
one future per request). It speaks only what the benches need: requests with a body of known
length, answers with Content-Length.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class _Answers(asyncio.Protocol):
    """One keep-alive connection's answers, parsed as they arrive (an asyncio Protocol: no
    stream reader, no task, one future per request)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._answer()
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(
                ConnectionError("server closed the connection before answering")
            )

    def _answer(self) -> tuple[int, bytes, bool] | None:
        """(status, body, close) once a whole answer is in the buffer, else None."""
        end_of_head = self.buf.find(b"\r\n\r\n")
        if end_of_head < 0:
            return None
        status_line, *lines = bytes(self.buf[:end_of_head]).split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, close = 0, False
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise ValueError("chunked answers are not supported here")
        end = end_of_head + 4 + length
        if len(self.buf) < end:
            return None
        data = bytes(self.buf[end_of_head + 4 : end])
        del self.buf[:end]
        return status, data, close


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._answers: _Answers | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        reused = self._answers is not None
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
        answers = self._answers
        if answers is None or answers.lost:
            loop = asyncio.get_running_loop()
            _, answers = await loop.create_connection(_Answers, self.host, self.port)
            self._answers = answers
        assert answers.transport is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        answers.waiter = asyncio.get_running_loop().create_future()
        answers.transport.write(head.encode() + body)
        try:
            status, data, close = await answers.waiter
        except BaseException:
            self.close()
            raise
        finally:
            answers.waiter = None
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self._answers is not None and self._answers.transport is not None:
            self._answers.transport.close()
        self._answers = None


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
