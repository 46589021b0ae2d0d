"""SCPI program messages: framing, parsing and parameters (IEEE 488.2 / SCPI-99).

The message side of the emulator's SCPI layer (:mod:`cimlab.instruments.emulator.scpi`
holds the instrument, its command tree, status registers and error queue):

* the standard SCPI-99 error numbers (chapter 21) and :class:`ScpiError`;
* the limits on what a server accepts (message length, digits of a number, echoed text);
* :class:`Param`, one parameter with its typed readers (numbers with ``MIN``/``MAX``/``DEF``,
  booleans, character data, strings, definite-length arbitrary blocks);
* :func:`split_message`, which finds where a program message ends in a byte stream (a
  newline inside a string or a block does not end it), and the parser that splits one
  message into program message units (``;``) and their parameters (``,``);
* :func:`encode_block`, :func:`expect` and :func:`fmt` for writing handlers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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



class ScpiError(Exception):
    """An SCPI error to be put on the instrument's error queue.

    ``code`` is the SCPI-99 error number, ``info`` the device-dependent text appended after
    ``;`` in the queue entry (cimlab puts the offending header there).
    """

    def __init__(self, code: int, info: str = ""):
        self.code = code
        self.info = info
        super().__init__(f"{code},{ERROR_MESSAGES.get(code, 'Error')}; {info}")


def _short_long(mnemonic: str) -> tuple[str, str]:
    """``"VOLTage"`` -> ``("VOLT", "VOLTAGE")``: the upper-case letters are the short form."""
    short = "".join(ch for ch in mnemonic if ch.isupper() or ch.isdigit())
    return short, mnemonic.upper()


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
