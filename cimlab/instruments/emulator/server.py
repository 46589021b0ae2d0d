"""Raw-socket SCPI servers: one TCP port per emulated instrument, like an LXI instrument's
port 5025.

A client sends newline-terminated program messages (binary blocks may contain newlines; the
framing in :func:`~cimlab.instruments.emulator.scpi.split_message` skips them); each message
is handed to the instrument's :meth:`~cimlab.instruments.emulator.scpi.Instrument.handle`, and
its response, if any, is sent back newline-terminated. Each connection is served by its own
thread; the instruments of one world share one lock, so operations are serialised exactly as
on a bench where every instrument acts on the same chip.
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


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        instrument = self.server.instrument
        buffer = bytearray()
        start = 0
        need = 1
        while True:
            try:
                if need - len(buffer) > WAITALL_MIN:
                    # inside a big block of known length: wait for all of it in one call
                    # (one wake-up of this thread instead of one per TCP segment)
                    chunk = _recv_exactly(sock, need - len(buffer))
                else:
                    chunk = sock.recv(RECV_SIZE)
            except OSError:
                return
            if not chunk:
                return
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
                try:
                    reply = instrument.handle(message)
                except Exception:  # a bug in the emulator must not kill the connection
                    log.exception("emulator error on %r", message[:200])
                    with instrument.lock:
                        instrument.push_error(-200, "internal emulator error")
                    reply = b""
                if reply:
                    try:
                        sock.sendall(reply)
                    except OSError:
                        return
            if start:
                del buffer[:start]
                start = 0


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
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], instrument: Instrument):
        self.instrument = instrument
        super().__init__(address, _Handler)


class ScpiServer:
    """Serve one instrument on ``host:port`` (port 0: an ephemeral port) in a daemon thread."""

    def __init__(self, instrument: Instrument, host: str = "127.0.0.1", port: int = 0):
        self.instrument = instrument
        self._server = _Server((host, port), instrument)
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
