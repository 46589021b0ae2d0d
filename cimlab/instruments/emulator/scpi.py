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
from collections.abc import Callable
from dataclasses import dataclass, field

# The message layer lives in scpi_message; every name is re-exported here so that
# ``from cimlab.instruments.emulator.scpi import ...`` keeps working for all of them.
from cimlab.instruments.emulator.scpi_message import (
    _SPECIAL as _SPECIAL,
)
from cimlab.instruments.emulator.scpi_message import (
    ERROR_MESSAGES as ERROR_MESSAGES,
)
from cimlab.instruments.emulator.scpi_message import (
    MAX_INFO_CHARS as MAX_INFO_CHARS,
)
from cimlab.instruments.emulator.scpi_message import (
    MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES,
)
from cimlab.instruments.emulator.scpi_message import (
    MAX_NUMBER_CHARS as MAX_NUMBER_CHARS,
)
from cimlab.instruments.emulator.scpi_message import (
    Param as Param,
)
from cimlab.instruments.emulator.scpi_message import (
    ScpiError as ScpiError,
)
from cimlab.instruments.emulator.scpi_message import (
    _no_params as _no_params,
)
from cimlab.instruments.emulator.scpi_message import (
    _numeric_text as _numeric_text,
)
from cimlab.instruments.emulator.scpi_message import (
    _parse_units as _parse_units,
)
from cimlab.instruments.emulator.scpi_message import (
    _short_long as _short_long,
)
from cimlab.instruments.emulator.scpi_message import (
    _Unit as _Unit,
)
from cimlab.instruments.emulator.scpi_message import (
    encode_block as encode_block,
)
from cimlab.instruments.emulator.scpi_message import (
    expect as expect,
)
from cimlab.instruments.emulator.scpi_message import (
    fmt as fmt,
)
from cimlab.instruments.emulator.scpi_message import (
    split_message as split_message,
)

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


# ---------------------------------------------------------------------------------------------
# command tree


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
