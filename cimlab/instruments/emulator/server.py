"""Raw-socket SCPI servers: one TCP port per emulated instrument, like an LXI instrument's
port 5025.

A client sends newline-terminated program messages (binary blocks may contain newlines; the
framing in :func:`~cimlab.instruments.emulator.scpi.split_message` skips them); each message
is handed to the instrument's :meth:`~cimlab.instruments.emulator.scpi.Instrument.handle`, and
its response, if any, is sent back newline-terminated. Each connection is served by its own
thread; the instruments of one world share one lock, so operations are serialised exactly as
on a bench where every instrument acts on the same chip.

Bounded against a hostile or broken client (docs/array-controller-protocol.md, "Limits"): a
message longer than the instrument's ``max_message_bytes`` (or a block header declaring more)
is refused with ``-223,"Too much data"`` and skipped up to the next newline without being
buffered; at most :data:`MAX_CONNECTIONS` connections are served at once, a further one gets
one ``-310`` line and is closed; an abrupt disconnect ends only its own thread.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading

from cimlab.instruments.emulator.scpi import Instrument, split_message

log = logging.getLogger(__name__)

#: bytes asked of the socket per recv(); large so a 1 MB block arrives in few system calls
RECV_SIZE = 1 << 20
#: inside a block, wait for the rest in one call when more than this many bytes are missing
WAITALL_MIN = 4096
#: connections served at once per instrument; one more is answered with a -310 line and closed
MAX_CONNECTIONS = 32


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        instrument = self.server.instrument
        limit = instrument.max_message_bytes
        buffer = bytearray()
        start = 0
        need = 1
        discarding = False  # skipping a too-long message up to its newline
        while True:
            try:
                if not discarding and need - len(buffer) > WAITALL_MIN:
                    # inside a big block of known length (at most `limit`): wait for all of it
                    # in one call (one wake-up of this thread instead of one per TCP segment)
                    chunk = _recv_exactly(sock, need - len(buffer))
                else:
                    chunk = sock.recv(RECV_SIZE)
            except OSError:
                return
            if not chunk:
                return
            if discarding:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                discarding = False
                chunk = chunk[nl + 1 :]
            buffer.extend(chunk)
            while True:
                end, need = split_message(buffer, start)
                if end < 0:
                    need -= start
                    break
                message = bytes(buffer[start : end - 1])
                if message.endswith(b"\r"):
                    message = message[:-1]
                start = end
                if len(message) > limit:  # arrived whole within one recv: refuse it still
                    reply = instrument.refuse_too_long(message[:64])
                    if reply and not _send(sock, reply):
                        return
                    continue
                if not self._reply(sock, instrument, message):
                    return
            if start:
                del buffer[:start]
                start = 0
            if need > limit + 1:  # the pending message (or its block) is too long: refuse it
                reply = instrument.refuse_too_long(bytes(buffer[:64]))
                nl = buffer.find(b"\n", _header_end(buffer))
                if nl < 0:
                    discarding = True
                    buffer.clear()
                else:  # a newline inside the refused block resynchronises the stream
                    del buffer[: nl + 1]
                need = 1
                if reply and not _send(sock, reply):
                    return

    @staticmethod
    def _reply(sock: socket.socket, instrument: Instrument, message: bytes) -> bool:
        """Handle one message and send its reply; False when the peer has gone."""
        try:
            reply = instrument.handle(message)
        except Exception:  # a bug in the emulator must not kill the connection
            log.exception("emulator error on %r", message[:200])
            with instrument.lock:
                instrument.push_error(-200, "internal emulator error")
            reply = b""
        return _send(sock, reply) if reply else True


def _header_end(buffer: bytearray) -> int:
    """Index just past a leading block header ``#<n><digits>`` in ``buffer``'s first 64 bytes
    (0 when there is none): a newline is searched for after it."""
    i = buffer.find(b"#", 0, 64)
    if i < 0 or i + 1 >= len(buffer) or not 0x31 <= buffer[i + 1] <= 0x39:
        return 0
    return min(len(buffer), i + 2 + buffer[i + 1] - 0x30)


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from ``sock`` (fewer only if the peer closes)."""
    data = bytearray(n)
    view = memoryview(data)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        if k == 0:
            break
        got += k
    return bytes(data[:got])


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of connects is accepted, not retried
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], instrument: Instrument,
                 max_connections: int = MAX_CONNECTIONS):
        self.instrument = instrument
        self.max_connections = max_connections
        self.active = 0
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        with self._count_lock:
            refuse = self.active >= self.max_connections
            if not refuse:
                self.active += 1
        if refuse:
            _send(request, b'-310,"System error;too many connections: '
                           + str(self.max_connections).encode() + b' already open"\n')
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread could be started: count the slot free again
            with self._count_lock:
                self.active -= 1
            raise

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.active -= 1


class ScpiServer:
    """Serve one instrument on ``host:port`` (port 0: an ephemeral port) in a daemon thread."""

    def __init__(self, instrument: Instrument, host: str = "127.0.0.1", port: int = 0,
                 max_connections: int = MAX_CONNECTIONS):
        self.instrument = instrument
        self._server = _Server((host, port), instrument, max_connections)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scpi-{type(instrument).__name__}-{self.port}",
            daemon=True,
        )

    @property
    def address(self) -> str:
        """The VISA resource name a client opens: ``TCPIP0::<host>::<port>::SOCKET``."""
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    def start(self) -> ScpiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
