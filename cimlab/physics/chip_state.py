"""Saving and restoring an emulated chip: the state layout and :class:`ChipStateMixin`.

:class:`~cimlab.physics.chip.ReRAMChip` gets ``state_dict`` / ``from_state`` / ``load_state``
and ``save`` / ``load`` (a compressed ``.npz`` through :mod:`cimlab.physics.state`) from the
mixin here. A state holds everything a chip is (profile, seed, random generator states,
thermal clock, per-cell hidden state, device-to-device parameters, MVM tile snapshots and wire
resistances), so a restored chip continues bit for bit as the original would. Layout and
version: docs/physics.md, "State files".
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimlab import __version__
from cimlab.params import from_dict, to_dict
from cimlab.physics import faults
from cimlab.physics import read_noise as flicker
from cimlab.physics.profile import ChipProfile
from cimlab.physics.retention import ThermalClock
from cimlab.physics.state import StateReader, load_npz, save_npz

if TYPE_CHECKING:
    from cimlab.physics.chip import ReRAMChip

#: ``format`` of a chip state (:meth:`ReRAMChip.state_dict`)
STATE_FORMAT = "cimlab-chip-state"
#: layout version of a chip state; raised when the layout changes incompatibly
STATE_VERSION = 1

#: per-cell hidden state: state key -> (attribute, dtype)
_CELL_STATE: dict[str, tuple[str, Any]] = {
    "g_prog": ("_g_prog", np.float64),        # S, conductance right after the last pulse
    "e_prog_rel": ("_e_prog_rel", np.float64),  # s, equivalent time of it (epoch-relative)
    "e_obs_rel": ("_e_obs_rel", np.float64),  # s, equivalent time of the last observation
    "x_obs": ("_x_obs", np.float64),          # S, relaxation offset at that observation
    "rate_mean": ("_rate_mean", np.float32),  # S/decade, m(g_prog)
    "rate_var": ("_rate_var", np.float32),    # S^2/decade, b(g_prog)
    "damage": ("_damage", np.float64),        # 1, accumulated wear
    "cycles": ("_cycles", np.uint32),         # SET pulses that switched more than half way
    "fault": ("_fault", np.int8),             # 0 ok, +1 stuck-on, -1 stuck-off, +2 worn
}
#: device-to-device parameters, all float32 (see ReRAMChip.__init__)
_D2D_KEYS = ("set_v_th", "set_rate", "reset_v_th", "reset_rate", "ceil_factor", "floor_factor",
             "transistor_dv_th", "damage_limit")


class _TileCache:
    __slots__ = ("e_prog_max", "e_snap", "g", "s2", "t", "version")

    def __init__(self, version, e_snap, e_prog_max, g, s2, t):
        self.version = version
        self.e_snap = e_snap
        self.e_prog_max = e_prog_max
        self.g = g
        self.s2 = s2
        self.t = t


class ChipStateMixin:
    """``state_dict`` / ``from_state`` / ``load_state`` / ``save`` / ``load`` of
    :class:`~cimlab.physics.chip.ReRAMChip` (which supplies ``_set_profile`` and the
    attributes a state holds)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything this chip is, as ``{name: numpy array | int | float | str}`` (copies).

        Profile (its TOML/dict form as JSON text), seed, the random generators' states (JSON
        text of ``bit_generator.state``), the thermal clock, every per-cell hidden state
        array (``cells.*``), the device-to-device parameters (``d2d.*``), the tile versions
        and MVM snapshots (``cache.*``: conductances and IR-drop transfer matrices, so that
        MVMs continue on the same snapshot) and the drawn wire resistances (``wires.*``).
        :meth:`from_state` of it continues bit for bit as this chip would. Layout and
        version: docs/physics.md, "State files".
        """
        ss = self._seedseq
        entropy = ss.entropy
        st: dict[str, Any] = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "cimlab_version": __version__,
            "profile": json.dumps(to_dict(self.profile)),
            "seed": json.dumps(_seed_json(self.seed)),
            "seed_sequence": json.dumps({
                "entropy": (entropy if isinstance(entropy, int) or entropy is None
                            else [int(e) for e in entropy]),
                "spawn_key": [int(k) for k in ss.spawn_key], "pool_size": int(ss.pool_size),
                "n_children_spawned": int(ss.n_children_spawned)}),
            "rng.ops": json.dumps(self._rng.bit_generator.state),
            "rng.truth": json.dumps(self._truth_rng.bit_generator.state),
            "clock.time_s": float(self._clock.time_s),
            "clock.epoch_s": float(self._clock.epoch_s),
            "clock.since_epoch_s": float(self._clock.since_epoch_s),
            "clock.ambient_k": float(self._clock.ambient_k),
        }
        for key, (attr, _dt) in _CELL_STATE.items():
            st["cells." + key] = getattr(self, attr).copy()
        for key in _D2D_KEYS:
            st["d2d." + key] = self.d2d[key].copy()
        st["tiles.version"] = self._tile_version.copy()
        if self._v_form is not None:  # a pristine chip (profile.forming); others lack the keys
            st["forming.v_form"] = self._v_form.copy()
            st["forming.unformed"] = self._unformed.copy()
        if self._flk_z is not None:
            st["flicker.z"] = self._flk_z.copy()
            st["flicker.t"] = self._flk_t.copy()
        cached = sorted(self._tile_cache)
        caches = [self._tile_cache[t] for t in cached]
        st["cache.tiles"] = np.array(cached, dtype=np.int64)
        st["cache.version"] = np.array([c.version for c in caches], dtype=np.int64)
        st["cache.e_snap"] = np.array([c.e_snap for c in caches], dtype=np.float64)
        st["cache.e_prog_max"] = np.array([c.e_prog_max for c in caches], dtype=np.float64)
        st["cache.g"] = _stack([c.g for c in caches], (self.rows, self.cols))
        st["cache.t"] = _stack([c.t for c in caches], (self.cols, self.rows))
        drawn = sorted(self._wires)
        st["wires.tiles"] = np.array(drawn, dtype=np.int64)
        st["wires.r_row"] = _stack([self._wires[t][0] for t in drawn], (self.rows, self.cols))
        st["wires.r_col"] = _stack([self._wires[t][1] for t in drawn], (self.rows, self.cols))
        return st

    @classmethod
    def from_state(cls, state: Any, *, source: Any = None, prefix: str = "") -> ReRAMChip:
        """A chip from a :meth:`state_dict` (or the mapping :func:`load_npz` returns).
        ``source`` (the file) and ``prefix`` only name things in errors."""
        chip = cls.__new__(cls)
        chip.load_state(state, source=source, prefix=prefix)
        return chip

    def load_state(self, state: Any, *, source: Any = None, prefix: str = "") -> None:
        """Become the chip ``state`` describes (profile included). Everything is validated
        first: a bad state raises :class:`~cimlab.errors.ConfigError` naming ``source`` and
        the entry, and leaves this chip unchanged."""
        r = StateReader(state, source, prefix)
        r.header(STATE_FORMAT, STATE_VERSION, "an emulated chip's state, ReRAMChip.save")
        try:
            profile = from_dict(ChipProfile, r.json("profile", "the chip profile"),
                                source=source, prefix=prefix + "profile.")
        except TypeError as exc:
            raise r.error("profile", "the chip profile's fields", str(exc)) from None
        seed = r.json("seed", "the seed")
        seedseq = _seed_sequence(r)
        rng = _generator(r, "rng.ops")
        truth_rng = _generator(r, "rng.truth")
        clock = ThermalClock(profile.retention, profile.window.t_room_k)
        clock.time_s = r.number("clock.time_s", lo=0.0)
        clock.epoch_s = r.number("clock.epoch_s", lo=0.0)
        clock.since_epoch_s = r.number("clock.since_epoch_s", lo=0.0)
        clock.ambient_k = r.number("clock.ambient_k", lo=0.0, lo_open=True)
        geo = profile.geometry
        rows, cols, n_tiles = geo.rows, geo.cols, geo.n_tiles
        n = n_tiles * rows * cols
        cells = {key: r.array("cells." + key, dt, (n,), finite=True)
                 for key, (_attr, dt) in _CELL_STATE.items()}
        if not np.all(np.isin(cells["fault"], (faults.OK, faults.STUCK_ON, faults.STUCK_OFF,
                                                faults.WORN))):
            raise r.error("cells.fault", "fault codes 0, 1, -1, 2", "other values")
        d2d = {key: r.array("d2d." + key, np.float32, (n,), finite=True) for key in _D2D_KEYS}
        tile_version = r.array("tiles.version", np.int64, (n_tiles,))
        v_form = unformed = None
        if r.has("forming.v_form") or profile.forming.pristine:
            # states of chips without the pristine option (and those written before it
            # existed) have no forming keys: every cell formed
            v_form = r.array("forming.v_form", np.float64, (n,))
            if np.any(np.isneginf(v_form)):
                raise r.error("forming.v_form", "forming voltages [V], +inf (never) or NaN "
                              "(no forming needed)", "-inf")
            unformed = r.array("forming.unformed", np.bool_, (n,))
            if np.any(unformed & ~np.isfinite(v_form)) or np.any(
                    unformed & (cells["fault"] != faults.OK)):
                raise r.error("forming.unformed", "unformed cells only among fault-free "
                              "cells with a finite forming voltage")
        flk_z = flk_t = None
        if r.has("flicker.z"):
            k = flicker.corner_frequencies(profile.read).size
            flk_z = r.array("flicker.z", np.float32, (n, k), finite=True)
            flk_t = r.array("flicker.t", np.float64, (n,))
        cache_tiles = _tile_list(r, "cache.tiles", n_tiles)
        k = cache_tiles.size
        c_version = r.array("cache.version", np.int64, (k,))
        if np.any(c_version > tile_version[cache_tiles]):
            raise r.error("cache.version", "versions <= tiles.version of their tiles")
        c_e_snap = r.array("cache.e_snap", np.float64, (k,), finite=True)
        c_e_prog = r.array("cache.e_prog_max", np.float64, (k,), finite=True)
        c_g = r.array("cache.g", np.float64, (k, rows, cols), finite=True)
        c_t = r.array("cache.t", np.float64, (k, cols, rows), finite=True)
        wire_tiles = _tile_list(r, "wires.tiles", n_tiles)
        m = wire_tiles.size
        r_row = r.array("wires.r_row", np.float64, (m, rows, cols), finite=True)
        r_col = r.array("wires.r_col", np.float64, (m, rows, cols), finite=True)
        r.done()

        # all valid: become that chip
        from cimlab.physics.truth import ChipTruth

        self._set_profile(profile)
        self.seed = seed
        self._seedseq = seedseq
        self._rng = rng
        self._truth_rng = truth_rng
        self.d2d = d2d
        for key, (attr, _dt) in _CELL_STATE.items():
            setattr(self, attr, cells[key])
        self._clock = clock
        self._flk_z, self._flk_t = flk_z, flk_t
        self._tile_version = tile_version
        self._v_form, self._unformed = v_form, unformed
        read = profile.read
        self._tile_cache = {
            int(t): _TileCache(int(c_version[i]), float(c_e_snap[i]), float(c_e_prog[i]),
                               c_g[i], np.asarray(read.sigma(c_g[i])) ** 2,
                               # the memory layout transfer_matrix gives (a C array),
                               # so matmuls take the same BLAS path: same bits
                               np.ascontiguousarray(c_t[i]))
            for i, t in enumerate(cache_tiles)}
        self._wires = {int(t): (r_row[i], r_col[i]) for i, t in enumerate(wire_tiles)}
        self._iv_read_cache = {}
        self.truth = ChipTruth(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` to ``path`` as a compressed ``.npz`` (atomically)."""
        return save_npz(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReRAMChip:
        """The chip saved in ``path`` by :meth:`save`. A missing, foreign, damaged or newer
        file raises :class:`~cimlab.errors.ConfigError` naming the file and the entry."""
        return cls.from_state(load_npz(path), source=Path(path))


# ---------------------------------------------------------------------- state helpers
def _seed_json(seed: Any) -> Any:
    """The user's seed in JSON form (informational: the seed sequence is what is restored)."""
    if seed is None or isinstance(seed, (bool, str)):
        return seed
    if isinstance(seed, numbers.Integral):
        return int(seed)
    if isinstance(seed, (list, tuple, np.ndarray)):
        try:
            return [int(s) for s in np.asarray(seed).ravel()]
        except (TypeError, ValueError):
            pass
    return repr(seed)


def _seed_sequence(r: StateReader) -> np.random.SeedSequence:
    d = r.json("seed_sequence", "the seed sequence")
    try:
        entropy = d["entropy"]
        return np.random.SeedSequence(
            entropy if isinstance(entropy, int) else [int(e) for e in entropy],
            spawn_key=tuple(int(k) for k in d["spawn_key"]), pool_size=int(d["pool_size"]),
            n_children_spawned=int(d["n_children_spawned"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise r.error("seed_sequence", "entropy, spawn_key, pool_size, n_children_spawned",
                      repr(exc)) from None


def _generator(r: StateReader, key: str) -> np.random.Generator:
    d = r.json(key, "a PCG64 bit_generator.state")
    if not isinstance(d, dict) or d.get("bit_generator") != "PCG64":
        raise r.error(key, "a PCG64 bit_generator.state", d if not isinstance(d, dict)
                      else d.get("bit_generator"))  # fmt: skip
    bg = np.random.PCG64()
    try:
        bg.state = d
    except (KeyError, TypeError, ValueError) as exc:
        raise r.error(key, "a PCG64 bit_generator.state", repr(exc)) from None
    return np.random.Generator(bg)


def _tile_list(r: StateReader, key: str, n_tiles: int) -> np.ndarray:
    v = r.raw(key, "a 1-D int64 array of tile indices")
    if not (isinstance(v, np.ndarray) and v.dtype == np.int64 and v.ndim == 1):
        raise r.error(key, "a 1-D int64 array of tile indices", v)
    if v.size and (v.min() < 0 or v.max() >= n_tiles or np.unique(v).size != v.size):
        raise r.error(key, f"unique tile indices in [0, {n_tiles})", v.tolist())
    return v.copy()


def _stack(arrays: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    if not arrays:
        return np.zeros((0, *shape))
    return np.stack([np.asarray(a, dtype=np.float64) for a in arrays])
