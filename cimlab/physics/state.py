"""State files: plain arrays, numbers and strings in a compressed NumPy ``.npz`` archive.

The emulated chip (:meth:`cimlab.physics.ReRAMChip.save`) and the emulated bench
(:meth:`cimlab.instruments.emulator.EmulatedBench.save_state`) persist as flat mappings
``name -> numpy array | int | float | bool | str``. Structured values (the chip profile, the
random generators' states, settings) are stored as JSON text. Nothing in a state file is ever
executed: archives are written with :func:`numpy.savez_compressed` and read with
:func:`numpy.load` refusing object arrays (which only Python's object serialization could
hold), so such an entry is refused, not unpacked.

Every state carries ``format`` (what it is) and ``format_version`` (an integer, raised when
the layout changes incompatibly); a reader refuses another format and a newer version with a
:class:`~cimlab.errors.ConfigError` naming the file and the field. The layouts are documented
in docs/physics.md ("State files").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError

#: what a state file may hold per entry
Value = np.ndarray | int | float | bool | str


def save_npz(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` as a compressed ``.npz``, atomically (a temporary file in
    the same folder, then renamed: a crash leaves the previous file intact)."""
    p = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biufU":
            raise TypeError(f"state entry {key!r}: only numeric/bool arrays, numbers and strings "
                            f"can be stored, got dtype {a.dtype}")
        arrays[key] = a
    tmp = p.with_name(p.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _plain(a: np.ndarray) -> Value:
    if a.ndim != 0:
        return a
    kind = a.dtype.kind
    if kind == "U":
        return str(a)
    if kind == "b":
        return bool(a)
    if kind in "iu":
        return int(a)
    if kind == "f":
        return float(a)
    return a


def load_npz(path: str | os.PathLike) -> dict[str, Value]:
    """Read a state file written by :func:`save_npz` (object arrays are refused).
    0-d entries come back as Python numbers, bools and strings. A missing, truncated or
    foreign file raises :class:`~cimlab.errors.ConfigError` naming it."""
    p = Path(path)
    expected = "a cimlab state file (compressed NumPy .npz archive of plain arrays)"
    if not p.is_file():
        raise ConfigError(p, "<file>", "an existing " + expected)
    try:
        with np.load(p, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: _plain(z[k]) for k in z.files}
    except Exception as exc:  # ValueError (object arrays, not an archive), BadZipFile,
        # OSError, EOFError, zlib.error from a damaged member, ...
        raise ConfigError(p, "<file>", expected, f"{type(exc).__name__}: {exc}") from None


class StateReader:
    """Strict, typed access to a state mapping; errors name ``source`` and ``prefix + key``.

    Call :meth:`done` at the end: keys nobody asked for are refused (a file from another
    layout), as :func:`cimlab.params.from_dict` refuses unknown keys.
    """

    def __init__(self, state: Mapping[str, Any], source: Any = None, prefix: str = "") -> None:
        self.state = state
        self.source = source
        self.prefix = prefix
        self._used: set[str] = set()

    def error(self, key: str, expected: str, got: Any = None) -> ConfigError:
        return ConfigError(self.source, self.prefix + key, expected, got)

    def has(self, key: str) -> bool:
        return key in self.state

    def raw(self, key: str, expected: str) -> Any:
        if key not in self.state:
            raise self.error(key, f"this key to be present ({expected})")
        self._used.add(key)
        return self.state[key]

    def header(self, fmt: str, version: int, what: str) -> int:
        """Check ``format`` == ``fmt`` and ``1 <= format_version <= version``."""
        got = self.state.get("format")
        if got != fmt:
            raise self.error("format", f"{fmt!r} ({what})", got)
        self._used.add("format")
        v = self.integer("format_version", lo=1)
        if v > version:
            writer = self.state.get("cimlab_version", "?")
            raise self.error("format_version",
                             f"at most {version}: the file was written by a newer cimlab "
                             f"({writer}); upgrade cimlab to read it", v)
        if "cimlab_version" in self.state:
            self.string("cimlab_version")
        return v

    def string(self, key: str) -> str:
        v = self.raw(key, "a string")
        if not isinstance(v, str):
            raise self.error(key, "a string", _describe(v))
        return v

    def boolean(self, key: str) -> bool:
        v = self.raw(key, "true or false")
        if not isinstance(v, bool):
            raise self.error(key, "a boolean", _describe(v))
        return v

    def integer(self, key: str, lo: int | None = None, hi: int | None = None) -> int:
        v = self.raw(key, "an integer")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, "an integer", _describe(v))
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(key, f"an integer in [{lo}, {hi}]", v)
        return v

    def number(self, key: str, lo: float | None = None, lo_open: bool = False) -> float:
        v = self.raw(key, "a finite number")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(key, "a finite number", _describe(v))
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise self.error(key, f"a number {'>' if lo_open else '>='} {lo}", v)
        return float(v)

    def json(self, key: str, what: str) -> Any:
        text = self.string(key)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.error(key, f"{what} as JSON text ({exc})") from None

    def array(self, key: str, dtype: Any, shape: tuple[int, ...], finite: bool = False
              ) -> np.ndarray:  # fmt: skip
        """An array of exactly ``dtype`` and ``shape`` (a copy, writable)."""
        dt = np.dtype(dtype)
        expected = f"a {dt.name} array of shape {shape}"
        v = self.raw(key, expected)
        if not isinstance(v, np.ndarray) or v.dtype != dt or v.shape != shape:
            raise self.error(key, expected, _describe(v))
        if finite and not np.all(np.isfinite(v)):
            raise self.error(key, expected + " with finite values", "non-finite values")
        return np.array(v, copy=True)

    def sub(self, prefix: str) -> dict[str, Any]:
        """The entries under ``prefix`` (prefix stripped); they count as used."""
        out = {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}
        self._used.update(prefix + k for k in out)
        return out

    def done(self) -> None:
        unknown = sorted(set(self.state) - self._used)
        if unknown:
            raise self.error(unknown[0], "no such entry in this format version (a file from "
                             "another program or a damaged file)")


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype.name} array of shape {v.shape}"
    return repr(v) if not isinstance(v, str) or len(v) < 60 else repr(v[:57] + "...")


__all__ = ["StateReader", "Value", "load_npz", "save_npz"]
