"""A generic SCPI (IEEE 488.2) command layer for the emulated instruments.

What a real SCPI instrument's parser does, in one place, so every emulated instrument speaks
the same dialect:

* headers in short or long mnemonic form (``SOUR`` / ``SOURce``), case-insensitive, optional
  nodes in brackets (``SOURce:VOLTage[:LEVel]``), a leading ``:`` for the root;
* several program message units in one message, separated by ``;``; a unit without a leading
  ``:`` continues in the subsystem of the previous unit (SCPI-99 section 6.2.4), falling back
  to the root;
* parameters separated by ``,``: numbers (NR1/NR2/NR3, ``MIN``/``MAX``/``DEF``), character
  data (``ON``, ``OFF``, ``SET``), strings (``'..'`` or ``".."``) and IEEE 488.2 definite-length
  arbitrary blocks ``#<n><len><bytes>`` (which may contain any byte, newline included);
* the IEEE 488.2 common commands (``*IDN? *RST *CLS *OPC *OPC? *ESR? *ESE *SRE *STB? *WAI
  *TST? *OPT?``) with the event status register and status byte;
* the SCPI error queue (``SYSTem:ERRor[:NEXT]?``, ``SYSTem:ERRor:COUNt?``, ``SYSTem:ERRor:ALL?``)
  with the standard SCPI-99 error numbers (chapter 21) and ``-350,"Queue overflow"``.

Responses of one message are joined with ``;`` and terminated with ``\\n``; a query that fails
answers nothing (as a real instrument does), except the block queries registered with
``block_reply=True``, which answer the empty block ``#10`` so that a client waiting on a binary
block sees the failure in the same round trip and then reads ``SYSTem:ERRor?``.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

#: Standard SCPI-99 error messages (chapter 21) used by the emulator.
ERROR_MESSAGES: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -123: "Exponent too large",
    -124: "Too many digits",
    -160: "Block data error",
    -161: "Invalid block data",
    -200: "Execution error",
    -220: "Parameter error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -410: "Query INTERRUPTED",
}

#: Longest program message a server accepts [bytes], block data included (16 MiB: a pulse of
#: every cell of the default 32 x 256 x 64 chip is 6.3 MB). A longer message, or a block header
#: declaring more, is refused with ``-223,"Too much data"`` without buffering it
#: (docs/array-controller-protocol.md, "Limits").
MAX_MESSAGE_BYTES = 16 << 20

#: Longest numeric parameter [characters]. SCPI-99 21.8.3 (-124 "Too many digits") allows an
#: instrument to refuse a mantissa of more than 255 digits; an exponent field is a few more.
MAX_NUMBER_CHARS = 300

#: Longest device-dependent text kept in an error-queue entry or a command-log entry.
MAX_INFO_CHARS = 200

#: Length of the error queue. SCPI-99 asks for at least 2; the Keithley 2450 holds more.
ERROR_QUEUE_LENGTH = 32

# Event status register bits (IEEE 488.2 section 11.5.1).
ESR_OPC = 1
ESR_QUERY_ERROR = 4
ESR_DEVICE_ERROR = 8
ESR_EXECUTION_ERROR = 16
ESR_COMMAND_ERROR = 32
# Status byte bits (IEEE 488.2 section 11.2 and SCPI-99 figure 9-1).
STB_ERROR_QUEUE = 4
STB_MAV = 16
STB_ESB = 32
STB_MSS = 64


class ScpiError(Exception):
    """An SCPI error to be put on the instrument's error queue.

    ``code`` is the SCPI-99 error number, ``info`` the device-dependent text appended after
    ``;`` in the queue entry (cimlab puts the offending header there).
    """

    def __init__(self, code: int, info: str = ""):
        self.code = code
        self.info = info
        super().__init__(f"{code},{ERROR_MESSAGES.get(code, 'Error')}; {info}")


# ---------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class Param:
    """One parameter of a program message unit: its text, or the bytes of a block."""

    text: str = ""
    block: bytes | None = None

    @property
    def is_block(self) -> bool:
        return self.block is not None

    def _need_text(self, what: str) -> str:
        if self.block is not None:
            raise ScpiError(-104, f"expected {what}, got a binary block")
        return self.text

    def number(self, *, lo: float | None = None, hi: float | None = None) -> float:
        """A decimal numeric parameter; ``MIN``/``MAX`` give ``lo``/``hi``; range checked."""
        t = _numeric_text(self._need_text("a number")).upper()
        if t in ("MIN", "MINIMUM") and lo is not None:
            value = lo
        elif t in ("MAX", "MAXIMUM") and hi is not None:
            value = hi
        else:
            try:
                value = float(t)
            except ValueError:
                raise ScpiError(-104, f"expected a number, got {self.text[:40]!r}") from None
            if not np.isfinite(value):
                if t.lstrip("+-") in ("INF", "INFINITY", "NAN"):
                    raise ScpiError(-222, f"{self.text!r} is not finite")
                raise ScpiError(-123, f"{self.text[:40]!r} overflows a double")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ScpiError(-222, f"{value:g} outside [{lo:g}, {hi:g}]")
        return value

    def integer(self, *, lo: int | None = None, hi: int | None = None) -> int:
        """An integer (NR1) parameter, range checked."""
        t = _numeric_text(self._need_text("an integer"))
        try:
            value = int(t)
        except ValueError:
            try:
                f = float(t)
            except ValueError:
                raise ScpiError(-104, f"expected an integer, got {t[:40]!r}") from None
            if not np.isfinite(f):
                raise ScpiError(-123, f"{t[:40]!r} is not a finite integer") from None
            if f != int(f):
                raise ScpiError(-104, f"expected an integer, got {t[:40]!r}") from None
            value = int(f)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ScpiError(-222, f"{value} outside [{lo}, {hi}]")
        return value

    def boolean(self) -> bool:
        """``ON``/``OFF``/``1``/``0``."""
        t = self._need_text("ON, OFF, 1 or 0").upper()
        if t in ("ON", "1"):
            return True
        if t in ("OFF", "0"):
            return False
        raise ScpiError(-224, f"expected ON, OFF, 1 or 0, got {self.text!r}")

    def choice(self, *mnemonics: str) -> str:
        """Character data matching one of ``mnemonics`` (short/long form); the long form back."""
        t = self._need_text("character data").upper()
        for m in mnemonics:
            short, long_ = _short_long(m)
            if t in (short, long_):
                return long_
        raise ScpiError(-224, f"expected one of {', '.join(mnemonics)}, got {self.text!r}")

    def string(self) -> str:
        """String data in quotes (``'..'`` or ``".."``; a doubled quote is a literal quote)."""
        t = self._need_text("a quoted string")
        if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
            q = t[0]
            return t[1:-1].replace(q + q, q)
        raise ScpiError(-104, f"expected a quoted string, got {t!r}")

    def array(self, dtype: str) -> np.ndarray:
        """A definite-length block as a little-endian numpy array (``"<f4"``, ``"<u4"``...)."""
        if self.block is None:
            raise ScpiError(-104, f"expected a binary block, got {self.text!r}")
        dt = np.dtype(dtype)
        if len(self.block) % dt.itemsize:
            raise ScpiError(
                -161, f"block of {len(self.block)} bytes is not a whole number of {dt.itemsize}"
            )
        return np.frombuffer(self.block, dtype=dt)


def _numeric_text(t: str) -> str:
    """``t`` if it is short enough to be a number, else -124 (never parse 5000 digits)."""
    if len(t) > MAX_NUMBER_CHARS:
        raise ScpiError(-124, f"numeric parameter of {len(t)} characters "
                              f"(at most {MAX_NUMBER_CHARS})")
    return t


def encode_block(data: bytes | np.ndarray) -> bytes:
    """IEEE 488.2 definite-length arbitrary block ``#<n><len><bytes>`` of ``data``."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    length = str(len(raw)).encode()
    if len(length) > 9:
        raise ValueError("block too long for a definite-length header")
    return b"#" + str(len(length)).encode() + length + raw


# ---------------------------------------------------------------------------------------------
# framing: splitting a byte stream into program messages


_SPECIAL = re.compile(rb"[\n#\"']")


def split_message(buffer: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Find the end of the program message that starts at ``start``.

    Returns ``(end, need)``: ``end`` is the index just past the ``\n`` that ends the message,
    or -1 when the buffer does not hold a complete message yet; ``need`` is then the buffer
    length needed before looking again (known exactly inside a definite-length block, so a
    server can wait for the whole block in one call). Newlines inside quoted strings and
    blocks do not end a message.
    """
    i = start
    n = len(buffer)
    while True:
        m = _SPECIAL.search(buffer, i)
        if m is None:
            return -1, n + 1
        j = m.start()
        c = buffer[j]
        if c == 0x0A:  # newline
            return j + 1, 0
        if c == 0x23:  # '#'
            if j + 1 >= n:
                return -1, n + 1
            d = buffer[j + 1]
            if 0x31 <= d <= 0x39:  # '1'..'9': definite length
                nd = d - 0x30
                if j + 2 + nd > n:
                    return -1, j + 2 + nd
                digits = bytes(buffer[j + 2 : j + 2 + nd])
                if not digits.isdigit():
                    i = j + 2  # malformed header: the parser reports it
                    continue
                end = j + 2 + nd + int(digits)
                if end > n:
                    return -1, end + 1
                i = end
                continue
            i = j + 1
            continue
        # quote: skip to the matching quote
        k = buffer.find(bytes([c]), j + 1)
        if k < 0:
            # an unterminated string: the message ends at the next newline
            nl = buffer.find(b"\n", j + 1)
            return (-1, n + 1) if nl < 0 else (nl + 1, 0)
        i = k + 1


@dataclass
class _Unit:
    header: str
    params: list[Param]
    text: str  # for the command log and error messages


def _parse_units(message: bytes) -> list[_Unit | ScpiError]:
    """Split one program message (without terminator) into units with parsed parameters."""
    units: list[_Unit | ScpiError] = []
    i = 0
    n = len(message)
    while i < n:
        # skip whitespace
        while i < n and message[i] in b" \t\r":
            i += 1
        if i >= n:
            break
        if message[i] == 0x3B:  # empty unit ';'
            i += 1
            continue
        hstart = i
        while i < n and message[i] not in b" \t\r;":
            i += 1
        try:
            header = message[hstart:i].decode("ascii")
        except UnicodeDecodeError:
            units.append(ScpiError(-102, "non-ASCII header"))
            return units
        params: list[Param] = []
        text_parts = [header]
        error: ScpiError | None = None
        # parameters
        while i < n and message[i] in b" \t\r":
            i += 1
        if i < n and message[i] != 0x3B:
            while True:
                while i < n and message[i] in b" \t\r":
                    i += 1
                if i >= n or message[i] in b",;":
                    error = ScpiError(-109 if not params else -102, f"{header}: empty parameter")
                    break
                c = message[i]
                if c == 0x23:  # '#'
                    if i + 1 >= n or not (0x31 <= message[i + 1] <= 0x39):
                        if i + 1 < n and message[i + 1] == 0x30:
                            error = ScpiError(-161, f"{header}: indefinite-length block")
                        else:
                            error = ScpiError(-161, f"{header}: bad block header")
                        break
                    nd = message[i + 1] - 0x30
                    digits = message[i + 2 : i + 2 + nd]
                    if len(digits) != nd or not digits.isdigit():
                        error = ScpiError(-161, f"{header}: bad block length digits")
                        break
                    length = int(digits)
                    start = i + 2 + nd
                    if start + length > n:
                        error = ScpiError(-160, f"{header}: block shorter than its header says")
                        break
                    params.append(Param(block=bytes(message[start : start + length])))
                    text_parts.append(f"#{nd}{length}<{length} bytes>")
                    i = start + length
                elif c in b"'\"":
                    k = message.find(bytes([c]), i + 1)
                    while k >= 0 and k + 1 < n and message[k + 1] == c:  # doubled quote
                        k = message.find(bytes([c]), k + 2)
                    if k < 0:
                        error = ScpiError(-102, f"{header}: unterminated string")
                        break
                    t = message[i : k + 1].decode("latin-1")
                    params.append(Param(text=t))
                    text_parts.append(t)
                    i = k + 1
                else:
                    pstart = i
                    while i < n and message[i] not in b",;":
                        i += 1
                    t = message[pstart:i].decode("latin-1").strip()
                    if not t or any(ch in t for ch in " \t"):
                        error = ScpiError(-102, f"{header}: bad parameter {t!r}")
                        break
                    params.append(Param(text=t))
                    text_parts.append(t)
                while i < n and message[i] in b" \t\r":
                    i += 1
                if i < n and message[i] == 0x2C:  # ','
                    i += 1
                    continue
                if i < n and message[i] != 0x3B:
                    error = ScpiError(-102, f"{header}: expected ',' or ';' after a parameter")
                break
        if error is not None:
            error.header = header  # type: ignore[attr-defined]
            units.append(error)
            return units
        units.append(_Unit(header, params, " ".join(text_parts[:1]) + (
            " " + ",".join(text_parts[1:]) if len(text_parts) > 1 else "")))
        if i < n and message[i] == 0x3B:
            i += 1
    return units


# ---------------------------------------------------------------------------------------------
# command tree


def _short_long(mnemonic: str) -> tuple[str, str]:
    """``"VOLTage"`` -> ``("VOLT", "VOLTAGE")``: the upper-case letters are the short form."""
    short = "".join(ch for ch in mnemonic if ch.isupper() or ch.isdigit())
    return short, mnemonic.upper()


Handler = Callable[[list[Param]], "str | bytes | None"]


@dataclass
class _Command:
    pattern: str
    write: Handler | None
    query: Handler | None
    block_reply: bool


def _expand(pattern: str) -> list[list[str]]:
    """All node sequences of a pattern with optional ``[:NODE]`` parts left in or out."""
    nodes: list[tuple[str, bool]] = []
    for part in re.findall(r"\[:?[A-Za-z0-9]+\]|:?[A-Za-z0-9]+", pattern):
        optional = part.startswith("[")
        nodes.append((part.strip("[]:"), optional))
    seqs: list[list[str]] = [[]]
    for name, optional in nodes:
        new = [[*s, name] for s in seqs]
        if optional:
            new += [list(s) for s in seqs]
        seqs = new
    return seqs


@dataclass
class _Node:
    alias: dict[str, str] = field(default_factory=dict)  # short/long token -> long name
    children: dict[str, _Node] = field(default_factory=dict)
    cmd: _Command | None = None


@dataclass
class Instrument:
    """An SCPI instrument: a command tree, status registers and an error queue.

    Subclasses register commands with :meth:`command` in ``__init__`` and implement
    :meth:`idn`, :meth:`reset` (``*RST``). :meth:`handle` processes one program message and
    returns the response bytes (terminated) or ``b""``. Callers serialise access with
    ``lock`` (the emulated world shares one lock between all its instruments).
    """

    lock: threading.RLock = field(default_factory=threading.RLock)
    log_length: int = 100_000

    def __post_init__(self) -> None:
        self._root = _Node()
        self.errors: deque[tuple[int, str]] = deque()
        self.esr = 0
        self.ese = 0
        self.sre = 0
        #: every program message received, decoded (blocks summarised), oldest first
        self.log: deque[str] = deque(maxlen=self.log_length)
        self.command("SYSTem:ERRor[:NEXT]", query=self._q_error)
        self.command("SYSTem:ERRor:COUNt", query=lambda p: str(len(self.errors)))
        self.command("SYSTem:ERRor:ALL", query=self._q_error_all)
        self.command("SYSTem:VERSion", query=lambda p: "1999.0")
        self.command("STATus:PRESet", write=self._w_status_preset)

    # -- to be provided by subclasses --------------------------------------------------------
    def idn(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """``*RST``: the instrument's documented reset state."""

    def options(self) -> str:
        return "0"

    # -- registration ------------------------------------------------------------------------
    def command(
        self,
        pattern: str,
        *,
        write: Handler | None = None,
        query: Handler | None = None,
        block_reply: bool = False,
    ) -> None:
        """Register ``pattern`` (e.g. ``"SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]"``)."""
        for seq in _expand(pattern):
            node = self._root
            for mnemonic in seq:
                short, long_ = _short_long(mnemonic)
                for tok in (short, long_):
                    prev = node.alias.setdefault(tok, long_)
                    if prev != long_:
                        raise ValueError(f"mnemonic {tok} ambiguous: {prev} vs {long_}")
                node = node.children.setdefault(long_, _Node())
            old = node.cmd
            if old is None:
                node.cmd = _Command(pattern, write, query, block_reply)
            else:  # a second registration of the same path adds its write or query form
                node.cmd = _Command(old.pattern, write or old.write, query or old.query,
                                    block_reply or old.block_reply)

    # -- error queue -------------------------------------------------------------------------
    def push_error(self, code: int, info: str = "") -> None:
        """Queue an error (``-350`` replaces the last entry when the queue is full)."""
        msg = ERROR_MESSAGES.get(code, "Error")
        if info:
            if len(info) > MAX_INFO_CHARS:  # an abusive parameter is not echoed whole
                info = info[:MAX_INFO_CHARS] + "..."
            msg = f"{msg};{info}"
        if len(self.errors) >= ERROR_QUEUE_LENGTH:
            self.errors[-1] = (-350, ERROR_MESSAGES[-350])
        else:
            self.errors.append((code, msg))
        if -199 <= code <= -100:
            self.esr |= ESR_COMMAND_ERROR
        elif -299 <= code <= -200:
            self.esr |= ESR_EXECUTION_ERROR
        elif -399 <= code <= -300 or code > 0:
            self.esr |= ESR_DEVICE_ERROR
        elif -499 <= code <= -400:
            self.esr |= ESR_QUERY_ERROR

    @staticmethod
    def _format_error(code: int, msg: str) -> str:
        return f'{code},"{msg.replace(chr(34), chr(39))}"'

    def _q_error(self, params: list[Param]) -> str:
        _no_params(params, "SYST:ERR?")
        if not self.errors:
            return '0,"No error"'
        return self._format_error(*self.errors.popleft())

    def _q_error_all(self, params: list[Param]) -> str:
        _no_params(params, "SYST:ERR:ALL?")
        if not self.errors:
            return '0,"No error"'
        out = ",".join(self._format_error(*e) for e in self.errors)
        self.errors.clear()
        return out

    def _w_status_preset(self, params: list[Param]) -> None:
        _no_params(params, "STAT:PRES")
        self.ese = 0
        self.sre = 0

    def status_byte(self) -> int:
        stb = 0
        if self.errors:
            stb |= STB_ERROR_QUEUE
        if self.esr & self.ese:
            stb |= STB_ESB
        if stb & self.sre & ~STB_MSS:
            stb |= STB_MSS
        return stb

    # -- common commands ---------------------------------------------------------------------
    def _common(self, header: str, params: list[Param]) -> str | None:
        h = header.upper()
        query = h.endswith("?")
        name = h[:-1] if query else h
        if name in ("*ESE", "*SRE") and not query:
            if len(params) != 1:
                raise ScpiError(-109 if not params else -108, header)
            value = params[0].integer(lo=0, hi=255)
            if name == "*ESE":
                self.ese = value
            else:
                self.sre = value
            return None
        if params:
            raise ScpiError(-108, header)
        if h == "*IDN?":
            return self.idn()
        if h == "*RST":
            self.reset()
            return None
        if h == "*CLS":
            self.errors.clear()
            self.esr = 0
            return None
        if h == "*OPC":
            self.esr |= ESR_OPC  # operations here complete before the next message is read
            return None
        if h == "*OPC?":
            return "1"
        if h == "*WAI":
            return None  # every operation completes before the next one starts
        if h == "*ESR?":
            value, self.esr = self.esr, 0
            return str(value)
        if h == "*ESE?":
            return str(self.ese)
        if h == "*SRE?":
            return str(self.sre)
        if h == "*STB?":
            return str(self.status_byte())
        if h == "*TST?":
            return "0"
        if h == "*OPT?":
            return self.options()
        if h == "*TRG":
            return None
        raise ScpiError(-113, header)

    # -- message processing ------------------------------------------------------------------
    def _lookup(self, longs_or_tokens: list[str], start: _Node) -> tuple[list[str], _Node] | None:
        node = start
        path = []
        for tok in longs_or_tokens:
            long_ = node.alias.get(tok.upper())
            if long_ is None:
                return None
            path.append(long_)
            node = node.children[long_]
        return (path, node) if node.cmd is not None else None

    def _resolve(self, nodes: list[str], prefix: tuple[str, ...]) -> tuple[str, ...] | None:
        """The path of the command ``nodes`` names, relative to ``prefix`` first, then root."""
        if prefix:
            found = self._lookup(list(prefix) + nodes, self._root)
            if found is not None:
                return tuple(found[0])
        found = self._lookup(nodes, self._root)
        return None if found is None else tuple(found[0])

    def _is_block_query(self, header: str, prefix: tuple[str, ...]) -> bool:
        """Whether ``header`` names a query registered with ``block_reply``."""
        if not header.endswith("?") or header.lstrip(":").startswith("*"):
            return False
        body = header[1:-1] if header.startswith(":") else header[:-1]
        nodes = body.split(":")
        key = self._resolve(nodes, () if header.startswith(":") else prefix)
        if key is None:
            return False
        found = self._lookup(list(key), self._root)
        return bool(found and found[1].cmd and found[1].cmd.block_reply)

    @property
    def max_message_bytes(self) -> int:
        """Longest program message this instrument accepts [bytes] (:data:`MAX_MESSAGE_BYTES`)."""
        return MAX_MESSAGE_BYTES

    def refuse_too_long(self, head: bytes) -> bytes:
        """Queue ``-223,"Too much data"`` for a message longer than :attr:`max_message_bytes`
        that starts with ``head``; the reply a waiting client needs (``#10`` for a block query,
        else nothing). The server discards the message without buffering it."""
        with self.lock:
            token = head.lstrip(b" \t\r").split(None, 1)[0] if head.strip() else b""
            header = token.split(b";", 1)[0].decode("ascii", "replace")
            self.push_error(-223, f"message longer than {self.max_message_bytes} bytes"
                                  f" [{header[:40]}]")
            try:
                block = self._is_block_query(header, ())
            except Exception:  # a garbage header is simply not a block query
                block = False
            return b"#10\n" if block else b""

    def handle(self, message: bytes) -> bytes:
        """Process one program message (terminator stripped); the response, terminated, or b""."""
        with self.lock:
            responses: list[bytes] = []
            units = _parse_units(message)
            entry = " ; ".join(u.text if isinstance(u, _Unit) else "<error>" for u in units)
            self.log.append(entry if len(entry) <= 5 * MAX_INFO_CHARS
                            else entry[: 5 * MAX_INFO_CHARS] + "...")
            prefix: tuple[str, ...] = ()
            for unit in units:
                if isinstance(unit, ScpiError):
                    self.push_error(unit.code, unit.info)
                    if self._is_block_query(getattr(unit, "header", ""), prefix):
                        responses.append(b"#10")  # the client waits for a block: answer
                    break
                header = unit.header
                query = header.endswith("?")
                try:
                    h = header.lstrip(":") if header.startswith(":*") else header
                    if h.startswith("*"):
                        out = self._common(h, unit.params)
                        if out is not None:
                            responses.append(out.encode())
                        continue
                    absolute = h.startswith(":")
                    body = h[1:] if absolute else h
                    body = body[:-1] if query else body
                    nodes = body.split(":")
                    if not body or any(not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", t) for t in nodes):
                        raise ScpiError(-102, f"bad header {header!r}")
                    key = self._resolve(nodes, () if absolute else prefix)
                    if key is None:
                        raise ScpiError(-113, header)
                    prefix = key[:-1]
                    cmd = self._lookup(list(key), self._root)[1].cmd
                    fn = cmd.query if query else cmd.write
                    if fn is None:
                        # the header exists, in the other form only
                        form = "has no query form" if query else "is a query only"
                        raise ScpiError(-100, f"{header} {form}")
                    try:
                        out = fn(unit.params)
                    except ScpiError as exc:
                        if query and cmd.block_reply:
                            responses.append(b"#10")
                        raise ScpiError(exc.code, f"{exc.info} [{header}]") from None
                    except (ValueError, TypeError, IndexError, ArithmeticError,
                            MemoryError) as exc:
                        # the physics refused the operation: an execution error, never a hang
                        if query and cmd.block_reply:
                            responses.append(b"#10")
                        raise ScpiError(-200, f"{exc} [{header}]") from None
                    if query:
                        if out is None:
                            out = ""
                        responses.append(out if isinstance(out, bytes) else out.encode())
                except ScpiError as exc:
                    self.push_error(exc.code, exc.info)
                    if -199 <= exc.code <= -100:
                        break  # a command error discards the rest of the message
            if not responses:
                return b""
            return b";".join(responses) + b"\n"


def _no_params(params: list[Param], header: str) -> None:
    if params:
        raise ScpiError(-108, header)


def expect(params: list[Param], n: int, header: str) -> list[Param]:
    """Exactly ``n`` parameters, or -109 (missing) / -108 (not allowed)."""
    if len(params) < n:
        raise ScpiError(-109, f"{header} needs {n} parameter(s)")
    if len(params) > n:
        raise ScpiError(-108, f"{header} takes {n} parameter(s)")
    return params


def fmt(values: Iterable[float] | float, spec: str = "{:.9g}") -> str:
    """Comma-separated decimal numbers."""
    if isinstance(values, (int, float)):
        return spec.format(values)
    return ",".join(spec.format(v) for v in values)
