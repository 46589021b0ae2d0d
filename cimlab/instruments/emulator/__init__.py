"""Emulated instruments served as raw-socket SCPI instruments on 127.0.0.1 (layer 2).

:class:`EmulatedBench` starts one server per instrument (``array``, ``smu``, ``oven``,
``clock``) over one shared :class:`World`; ``cimlab emulator serve`` runs them as a process.
Drivers reach them only through PyVISA, exactly as LAN instruments.
"""

from cimlab.instruments.emulator.bench import INSTRUMENTS, EmulatedBench, make_chip
from cimlab.instruments.emulator.scpi import ERROR_MESSAGES, ScpiError, encode_block
from cimlab.instruments.emulator.world import OvenRange, Timing, World

__all__ = [
    "ERROR_MESSAGES",
    "INSTRUMENTS",
    "EmulatedBench",
    "OvenRange",
    "ScpiError",
    "Timing",
    "World",
    "encode_block",
    "make_chip",
]
