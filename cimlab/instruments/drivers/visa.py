"""Shared PyVISA plumbing of the cimlab drivers: how instruments are opened, IEEE 488.2 binary
blocks, and error-queue checks that raise :class:`~cimlab.errors.InstrumentError`.

Binary blocks: cimlab's batched commands carry up to three blocks in one program message
(cells, amplitudes, gate voltages), which PyVISA's ``write_binary_values`` (one block appended
to one command, packed element by element with ``struct``) cannot express; the blocks are
therefore built here from NumPy buffers in the same IEEE 488.2 definite-length format
(``#<n><len><bytes>``, little endian, as ``pyvisa.util.to_ieee_block`` writes). Responses are
read with exactly sized reads (header, then length, then data and terminator), as PyVISA's
``read_binary_values`` does after parsing the header, but through the PyMeasure adapter so the
same code runs under ``pymeasure.test.expected_protocol``. The tests check both directions
against ``pyvisa.util``.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import numpy as np
from pyvisa import constants
from pyvisa.errors import VisaIOError

from cimlab.errors import InstrumentError

log = logging.getLogger(__name__)

#: the SCPI traffic log (DEBUG): every write and read with the instrument's role and its time
scpi_log = logging.getLogger("cimlab.scpi")

#: characters (or bytes) of a message kept in the traffic log; a longer one is cut there and
#: its length given (a binary block of a whole tile is ~100 kB)
LOG_MESSAGE_MAX = 120

#: bytes per low-level read for big blocks (pyvisa's default chunk is 20 kB; pyvisa-py's socket
#: session receives at most 4 kB per recv() by default)
CHUNK_SIZE = 1 << 20

#: default PyVISA backend: pyvisa-py, pure Python, no vendor VISA needed
DEFAULT_BACKEND = "@py"


def open_kwargs(backend: str = DEFAULT_BACKEND, timeout_s: float = 10.0) -> dict[str, Any]:
    """Keyword arguments for a PyMeasure instrument opened through PyVISA on a raw socket."""
    return {
        "visa_library": backend,
        "read_termination": "\n",
        "write_termination": "\n",
        "timeout": round(timeout_s * 1000),
    }


def tune_connection(instrument: Any) -> None:
    """Big read chunks for binary blocks (measured in ``benchmarks/visa_overhead.py``).

    Sets the resource's ``chunk_size``, TCP_NODELAY on socket resources and, on pyvisa-py
    TCPIP socket sessions, the session's ``max_recv_size`` (bytes per ``recv()``). Harmless on
    other backends and on the ``expected_protocol`` adapter.
    """
    conn = getattr(getattr(instrument, "adapter", None), "connection", None)
    if conn is None or type(conn).__module__.startswith("unittest"):
        return
    try:
        conn.chunk_size = CHUNK_SIZE
    except AttributeError:
        return
    session = getattr(getattr(conn, "visalib", None), "sessions", {}).get(
        getattr(conn, "session", None))
    if session is not None and hasattr(session, "max_recv_size"):
        session.max_recv_size = CHUNK_SIZE
    # No Nagle delay: the last segment of a block must not wait for the peer's delayed ACK
    # (measured: 40 ms per batched command without it). pyvisa-py 0.8 maps the VISA attribute
    # to a setter that refuses it, so its socket is set directly.
    sock = getattr(session, "interface", None)
    try:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif str(getattr(conn, "resource_name", "")).upper().startswith("TCPIP"):
            conn.set_visa_attribute(constants.VI_ATTR_TCPIP_NODELAY, constants.VI_TRUE)
    except (AttributeError, KeyError, TypeError, NotImplementedError, VisaIOError, OSError):
        log.debug("cannot tune %r", conn)


def shown(message: Any, limit: int = LOG_MESSAGE_MAX) -> str:
    """``message`` (str or bytes) as the log shows it: its repr, cut after ``limit``
    characters or bytes with the full length added (``'ARR:PULS #41024...'... (4120 bytes)``)."""
    n = len(message)
    if n <= limit:
        return repr(message)
    unit = "characters" if isinstance(message, str) else "bytes"
    return f"{message[:limit]!r}... ({n} {unit})"


class TrafficLog:
    """A PyMeasure adapter that logs every message it carries to :data:`scpi_log` at DEBUG:
    the instrument's role, the direction, the message (:func:`shown`: long ones cut, with
    their length) and the time the call took [ms] (for a read: the wait for the answer).
    Everything else is the wrapped adapter's (attributes are forwarded)."""

    def __init__(self, adapter: Any, role: str):
        self._adapter = adapter
        self._role = role

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def _timed(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = call(*args, **kwargs)
        ms = (time.perf_counter() - t0) * 1e3
        message = args[0] if what.startswith("write") else result
        scpi_log.debug("%s %s %s %.3f ms", self._role, what, shown(message), ms)
        return result

    def write(self, command: str, **kwargs: Any) -> None:
        self._timed("write", self._adapter.write, command, **kwargs)

    def write_bytes(self, content: bytes, **kwargs: Any) -> None:
        self._timed("write", self._adapter.write_bytes, content, **kwargs)

    def read(self, **kwargs: Any) -> str:
        return self._timed("read", self._adapter.read, **kwargs)

    def read_bytes(self, count: int = -1, break_on_termchar: bool = False,
                   **kwargs: Any) -> bytes:
        return self._timed("read", self._adapter.read_bytes, count, break_on_termchar,
                           **kwargs)


def log_traffic(instrument: Any, role: str) -> None:
    """Log ``instrument``'s traffic (:class:`TrafficLog`) when :data:`scpi_log` is enabled
    for DEBUG; otherwise leave its adapter as it is, so the hot path pays nothing."""
    adapter = getattr(instrument, "adapter", None)
    if (adapter is None or isinstance(adapter, TrafficLog)
            or not scpi_log.isEnabledFor(logging.DEBUG)):
        return
    instrument.adapter = TrafficLog(adapter, role)


def _visa_resource(instrument: Any) -> Any:
    """The PyVISA resource under a PyMeasure instrument, or None (e.g. expected_protocol)."""
    conn = getattr(getattr(instrument, "adapter", None), "connection", None)
    if conn is None or type(conn).__module__.startswith("unittest"):
        return None
    return conn if hasattr(conn, "set_visa_attribute") else None


def block(values: Any, dtype: str) -> bytes:
    """IEEE 488.2 definite-length block of ``values`` as NumPy ``dtype`` (``"<u4"``, ``"<f4"``)."""
    raw = np.ascontiguousarray(values, dtype=np.dtype(dtype)).tobytes()
    n = str(len(raw))
    return b"#" + str(len(n)).encode() + n.encode() + raw


def read_block(instrument: Any, dtype: str, command: str) -> np.ndarray:
    """Read one definite-length block response (and its ``\\n``) as a NumPy array.

    An empty block (``#10``) is how a cimlab instrument says the query failed: the error queue
    is then read and raised as :class:`InstrumentError` naming ``command``.
    """
    head = instrument.read_bytes(2)
    if len(head) != 2 or head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        raise InstrumentError(f"{instrument.name}: {command}: expected a definite-length block, "
                              f"got {head!r}")
    nd = int(head[1:2])
    digits = instrument.read_bytes(nd)
    if not digits.isdigit():
        raise InstrumentError(f"{instrument.name}: {command}: bad block length {digits!r}")
    length = int(digits)
    conn = _visa_resource(instrument)
    if conn is not None and length > 0:
        # The block holds arbitrary bytes: with the termination character enabled, pyvisa-py
        # ends every low-level read at each 0x0A inside the data (~1 in 256 bytes), which
        # costs a Python call and a buffer copy each. The length is known: read it raw.
        conn.set_visa_attribute(constants.VI_ATTR_TERMCHAR_EN, constants.VI_FALSE)
        try:
            data = instrument.read_bytes(length + 1)
        finally:
            conn.set_visa_attribute(constants.VI_ATTR_TERMCHAR_EN, constants.VI_TRUE)
    else:
        data = instrument.read_bytes(length + 1)
    if data[-1:] != b"\n":
        raise InstrumentError(f"{instrument.name}: {command}: block not followed by a newline")
    if length == 0:
        raise_errors(instrument, command, fallback="empty block (query failed)")
    return np.frombuffer(data, dtype=np.dtype(dtype), count=length // np.dtype(dtype).itemsize)


def read_errors(instrument: Any) -> list[tuple[int, str]]:
    """Drain the SCPI error queue (``SYST:ERR?`` until ``0,"No error"``)."""
    errors: list[tuple[int, str]] = []
    for _ in range(64):
        reply = instrument.ask("SYST:ERR?").strip()
        code_text, _, message = reply.partition(",")
        try:
            code = int(float(code_text))
        except ValueError:
            raise InstrumentError(f"{instrument.name}: SYST:ERR? answered {reply!r}") from None
        if code == 0:
            return errors
        errors.append((code, message.strip().strip('"')))
    raise InstrumentError(f"{instrument.name}: error queue does not drain")


def raise_errors(instrument: Any, command: str, fallback: str | None = None) -> None:
    """Raise :class:`InstrumentError` naming ``command`` if the error queue holds errors."""
    errors = read_errors(instrument)
    if errors:
        text = "; ".join(f"{c},{m!r}" for c, m in errors)
        raise InstrumentError(f"{instrument.name}: command {command!r} failed: {text}")
    if fallback:
        raise InstrumentError(f"{instrument.name}: command {command!r} failed: {fallback}")


class ErrorCheckingMixin:
    """Makes PyMeasure's ``check_set_errors``/``check_get_errors`` raise InstrumentError.

    Remembers the last command written so the error names it.
    """

    _last_command = ""

    def write(self, command: str, **kwargs: Any) -> None:
        self._last_command = command
        super().write(command, **kwargs)  # type: ignore[misc]

    def check_errors(self) -> list:
        raise_errors(self, self._last_command)
        return []

    def check_set_errors(self) -> list:
        return self.check_errors()

    def check_get_errors(self) -> list:
        return self.check_errors()
