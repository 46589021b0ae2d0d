"""What the Keithley 2450's command parser accepts beyond the generic SCPI layer
(:mod:`.scpi`), applied to a program message before it is parsed: the channel suffix ``1`` of
``:SOURce[1]`` / ``:SENSe[1]`` (2450 manual, SCPI command syntax) and an empty last parameter
(``:TRACe:MAKE 'buf', 100, `` as QCoDeS's driver sends it with its default style ``""``).
"""

from __future__ import annotations

import re


def normalise(message: bytes) -> bytes:
    """``message`` with the suffix ``1`` dropped and empty last parameters removed."""
    return _drop_suffix_one(_drop_empty_last_params(message))


def _drop_empty_last_params(message: bytes) -> bytes:
    """``message`` without a ``,`` followed only by blanks before a ``;`` or the end (quoted
    strings left alone; the SMU takes no binary blocks)."""
    out = bytearray()
    quote = 0
    pending = -1  # index in ``out`` of a comma not yet followed by a parameter
    for b in message:
        if quote:
            quote = 0 if b == quote else quote
        elif b in b"'\"":
            quote, pending = b, -1
        elif b == 0x2C:
            pending = len(out)
        elif b == 0x3B and pending >= 0:
            del out[pending:]
            pending = -1
        elif b not in b" \t\r\n":
            pending = -1
        out.append(b)
    if pending >= 0 and not quote:
        del out[pending:]
    return bytes(out)


_SUFFIX_ONE = re.compile(rb"(?i)(?<![A-Za-z0-9])(SOURCE|SOUR|SENSE|SENS)1(?=[:? ;]|$)")
_QUOTED = re.compile(rb"('[^']*'|\"[^\"]*\")")


def _drop_suffix_one(message: bytes) -> bytes:
    """``SOURce1`` / ``SENSe1`` (the manual's optional channel suffix, ``:SOURce[1]``) as
    ``SOURce`` / ``SENSe``, outside quoted strings."""
    parts = _QUOTED.split(message)
    return b"".join(p if i % 2 else _SUFFIX_ONE.sub(rb"\1", p) for i, p in enumerate(parts))
