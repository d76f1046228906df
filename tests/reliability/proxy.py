"""A loopback TCP proxy between the agent and the collector that breaks the network on demand.

    proxy = Proxy().start()                 # then point the agent at proxy.address
    proxy.upstream = "127.0.0.1:50051"      # and it at the collector
    proxy.drop_reply_ratio = 0.1   # lose the collector's answer to ~10 % of the pushes
    proxy.blackhole()              # accept and forward nothing (a partition) ...
    proxy.heal()                   # ... until now: the stale connections are reset
    proxy.reset_ratio = 0.05       # reset the connection instead of forwarding ~5 % of chunks
    proxy.reset_all()

A lost reply: at the TCP level a gRPC answer cannot be dropped alone, so the proxy cuts the
connection (RST, both sides) at the moment the collector starts answering a call: the response
HEADERS frame of an HTTP/2 stream. The collector sends it only after its handler returned, that
is after it committed the batch, so the batch is stored and the agent never hears it was.

The proxy reads the HTTP/2 frames coming back from the collector (no HPACK needed: only frame
headers and DATA payloads) and decodes the gRPC messages, PushResponses here, to sum what the
collector said it inserted and found duplicated: `duplicates` is the collector's own count of
records it received again and did not count twice.

Everything runs on an asyncio loop in a thread of its own; the knobs are plain attributes that
the test's thread sets (reads and writes of one attribute are atomic).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from dataclasses import dataclass, field

from infermeter.v1 import ingest_pb2

_DATA, _HEADERS = 0x0, 0x1
_PADDED = 0x8
_CHUNK = 65536


class ReplyReader:
    """Reads the server side of an HTTP/2 connection: which streams started answering, and the
    gRPC messages of their DATA frames. feed() returns the ids of streams whose response began
    in this chunk, and the messages completed in it."""

    def __init__(self) -> None:
        self._pending = b""
        self._answered: set[int] = set()
        self._bodies: dict[int, bytearray] = {}

    def feed(self, data: bytes) -> tuple[list[int], list[bytes]]:
        buffer = self._pending + data
        started: list[int] = []
        messages: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= 9:
            # A frame header: 24-bit length, type, flags, 31-bit stream id.
            length = int.from_bytes(buffer[offset:offset + 3], "big")
            kind, flags = buffer[offset + 3], buffer[offset + 4]
            stream = int.from_bytes(buffer[offset + 5:offset + 9], "big") & 0x7FFFFFFF
            if len(buffer) - offset - 9 < length:
                break
            payload = buffer[offset + 9:offset + 9 + length]
            offset += 9 + length
            if kind == _HEADERS and stream and stream not in self._answered:
                self._answered.add(stream)
                started.append(stream)
            elif kind == _DATA and stream:
                if flags & _PADDED:
                    payload = payload[1:len(payload) - payload[0]]
                body = self._bodies.setdefault(stream, bytearray())
                body += payload
                messages.extend(_take_messages(body))
        self._pending = buffer[offset:]
        return started, messages


def _take_messages(body: bytearray) -> list[bytes]:
    """Complete gRPC length-prefixed messages at the front of body, removed from it."""
    messages = []
    while len(body) >= 5:
        compressed, length = body[0], int.from_bytes(body[1:5], "big")
        if len(body) < 5 + length:
            break
        if compressed:
            raise ValueError("compressed gRPC messages are not expected here")
        messages.append(bytes(body[5:5 + length]))
        del body[:5 + length]
    return messages


@dataclass(eq=False)
class _Link:
    """One proxied connection: the agent's side and the collector's."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    blackholed: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)


class Proxy:
    def __init__(self, upstream: str = "", *, seed: int = 0) -> None:
        self.upstream = upstream  # HOST:PORT of the collector, read at each new connection
        self._rng = random.Random(seed)
        self.drop_reply_ratio = 0.0
        self.reset_ratio = 0.0
        self._blackholed = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.address = ""
        # What went through, for the test to look at.
        self.connections = 0
        self.replies = 0  # PushResponses forwarded to the agent
        self.inserted = 0
        self.duplicates = 0
        self.dropped_replies = 0
        self.resets = 0

    def start(self) -> Proxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        return self

    def close(self) -> None:
        if self._server is not None:
            self._call(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def blackhole(self) -> None:
        """From now on, forward nothing: connections are accepted, bytes are swallowed."""
        self._call(self._set_blackhole(True))

    def heal(self) -> None:
        """Forward again. The connections of the partition are reset (their streams lost
        bytes), as a peer's TCP stack does with a connection it no longer knows."""
        self._call(self._set_blackhole(False))

    def reset_all(self) -> None:
        """Reset every connection now (RST to both sides)."""
        self._call(self._abort_all())

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _set_blackhole(self, on: bool) -> None:
        self._blackholed = on
        for link in list(self._links):
            if on:
                link.blackholed = True
            elif link.blackholed:
                self._abort(link)

    async def _shut_down(self) -> None:
        self._server.close()
        await self._abort_all()
        # With their connections gone, the connections' tasks end by themselves.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            _, pending = await asyncio.wait(others, timeout=5)
            for task in pending:
                task.cancel()

    async def _abort_all(self) -> None:
        for link in list(self._links):
            self._abort(link)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(client_writer, blackholed=self._blackholed)
        self._links.add(link)
        try:
            if link.blackholed:
                await self._swallow(client_reader)
                return
            host, _, port = self.upstream.rpartition(":")
            try:
                upstream_reader, link.upstream = await asyncio.open_connection(host, int(port))
            except OSError:  # the collector is down: the agent sees the connection refused
                self._abort(link)
                return
            link.tasks = [
                asyncio.ensure_future(self._pump_requests(client_reader, link)),
                asyncio.ensure_future(self._pump_replies(upstream_reader, link)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._abort(link)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(_CHUNK):
                pass
        except OSError:
            pass

    async def _pump_requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        while data := await reader.read(_CHUNK):
            if link.blackholed:
                continue
            if self._roll(self.reset_ratio):
                self.resets += 1
                self._abort(link)
                return
            link.upstream.write(data)
            await link.upstream.drain()
        self._abort(link)

    async def _pump_replies(self, reader: asyncio.StreamReader, link: _Link) -> None:
        replies = ReplyReader()
        while data := await reader.read(_CHUNK):
            if link.blackholed:
                continue
            started, messages = replies.feed(data)
            if started and self._roll(self.drop_reply_ratio):
                self.dropped_replies += 1
                self._abort(link)
                return
            if self._roll(self.reset_ratio):
                self.resets += 1
                self._abort(link)
                return
            link.client.write(data)
            for message in messages:
                reply = ingest_pb2.PushResponse.FromString(message)
                self.replies += 1
                self.inserted += reply.inserted
                self.duplicates += reply.duplicates
            await link.client.drain()
        self._abort(link)

    def _roll(self, ratio: float) -> bool:
        return ratio > 0 and self._rng.random() < ratio

    def _abort(self, link: _Link) -> None:
        """Close both sides with RST (SO_LINGER 0), not a polite FIN."""
        if link not in self._links:
            return
        self._links.discard(link)
        for writer in (link.client, link.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
