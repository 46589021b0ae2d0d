"""The emulated ReRAM chip: per-cell hidden state, programming pulses, reads, tile MVMs.

All operations are vectorised over cells (flat index ``tile * rows * cols + row * cols +
col``), use the chip's own seeded ``numpy.random.Generator`` streams, and never read a wall
clock: callers pass ``now_s`` (the virtual clock) and let time pass at a temperature with
:meth:`ReRAMChip.advance`. The model and its sources are in docs/physics.md and in the field
docs of :mod:`cimlab.physics.profile`.

Pulse model (one pulse, cell at true conductance ``g``, see profile.SetSwitching):

* target ``g_t``: SET -> ceiling ``I_cc(v_gate, cell) / v_c * F_cell * C`` (compliance set by
  the 1T1R access transistor; ``F`` d2d, ``C`` c2c lognormal); RESET -> ``ln g_t = ln g -
  d - depth_sigma min(d, depth_sat) z``, ``d = max(ln(g / floor_cell(v)), 0)``
  (profile.ResetSwitching).
  A SET never lowers ``g``, a RESET never raises it.
* drive ``D = rate0 * k_cell * width * (exp((v - v_th_cell)/v0) - 1)`` above threshold, else 0
  (``((v - v_th_cell)/v0)^drive_power`` instead of ``exp - 1`` when the profile sets
  ``drive_power`` > 0: the 'shaped' profile), times ``(g / state_g_ref)^state_power`` when
  the profile sets ``state_power`` (the 'stateful' profile);
  fraction ``f = 1 - exp(-D)``.
* ``g' = g + f (g_t - g) + sqrt(q f (1 - f) |g_t - g|) z``: the defects between ``g`` and
  ``g_t`` (units of ``q``) each move with probability ``f`` (binomial, normal approximation), so
  small steps carry Poisson-like noise and a full switch lands exactly on the (random) target.
* energy ``E = v * width * min(max(g, g') v, I_max)``, ``I_max = I_cc(v_gate)``: the current of
  the cell's conducting state during the pulse, limited by the transistor (paper 003 Table I
  accounts SET/RESET energy as V I t at the compliance current; 600 uA, 2 V, 100 ns = 120 pJ).
* a pulse that moves the cell (above threshold, room to move) restarts its relaxation from the
  present conductance and adds wear (profile.Endurance); stuck and worn cells ignore pulses
  (they still conduct and cost energy).

Pristine chips (``profile.forming.pristine``, off by default): cells start unformed (the
stuck-off conductance, no switching, no relaxation) until a SET-polarity pulse or DC bias
above the cell's forming voltage forms them (:meth:`ReRAMChip._form`, profile.Forming).

State: :meth:`ReRAMChip.state_dict` / :meth:`ReRAMChip.from_state` (and ``save`` / ``load``
to a compressed ``.npz``, :mod:`cimlab.physics.state`; implemented in
:mod:`cimlab.physics.chip_state`) capture everything a chip is, so a restored chip continues
bit for bit as the original would (layout in docs/physics.md).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from cimlab.physics import crossbar, faults
from cimlab.physics import read_noise as flicker
from cimlab.physics.chip_state import STATE_FORMAT as STATE_FORMAT
from cimlab.physics.chip_state import STATE_VERSION as STATE_VERSION
from cimlab.physics.chip_state import ChipStateMixin, _TileCache
from cimlab.physics.profile import ChipProfile, load_profile
from cimlab.physics.relaxation import observe
from cimlab.physics.retention import ThermalClock

POLARITIES = ("set", "reset")


class ReRAMChip(ChipStateMixin):
    """An emulated 1T1R ReRAM chip with ``n_tiles`` tiles of ``rows x cols`` cells.

    ``ReRAMChip(profile, seed)``: ``profile`` a :class:`ChipProfile` or a profile name/path
    (default ``"default"``); ``seed`` anything :class:`numpy.random.SeedSequence` accepts. The
    same profile, seed and call sequence give the same results.
    """

    def __init__(self, profile: ChipProfile | str | None = None, seed: Any = None) -> None:
        if profile is None or isinstance(profile, str):
            profile = load_profile(profile or "default")
        self._set_profile(profile)
        self.seed = seed
        self._seedseq = np.random.SeedSequence(seed)
        ss_cells, ss_ops, ss_truth = self._seedseq.spawn(3)
        n = self.n_cells
        self._rng = np.random.Generator(np.random.PCG64(ss_ops))
        self._truth_rng = np.random.Generator(np.random.PCG64(ss_truth))
        rng = np.random.Generator(np.random.PCG64(ss_cells))
        p = profile
        f32 = np.float32

        def lognorm(sigma: float) -> np.ndarray:
            return np.exp(sigma * rng.standard_normal(n)).astype(f32)

        # device-to-device parameters (fixed at manufacture)
        self.d2d: dict[str, np.ndarray] = {
            "set_v_th": (p.set.v_th * (1.0 + p.set.v_th_sigma * rng.standard_normal(n))).astype(
                f32),
            "set_rate": lognorm(p.set.rate_sigma),
            "reset_v_th": (
                p.reset.v_th * (1.0 + p.reset.v_th_sigma * rng.standard_normal(n))).astype(f32),
            "reset_rate": lognorm(p.reset.rate_sigma),
            "ceil_factor": lognorm(p.set.v_c_sigma),
            "floor_factor": lognorm(p.reset.floor_sigma),
            "transistor_dv_th": (p.transistor.v_th_sigma * rng.standard_normal(n)).astype(f32),
            "damage_limit": lognorm(p.endurance.limit_sigma),
        }
        code, g_stuck = faults.draw_stuck(p.faults, n, rng)
        self._fault = code
        # as delivered: formed and RESET at the reference voltage (HRS floor)
        g0 = p.reset.g_floor_ref * self.d2d["floor_factor"] * np.exp(
            0.5 * rng.standard_normal(n))
        g0 = np.where(code != faults.OK, g_stuck, g0)
        # pristine chips (profile.forming): forming voltages and unformed cells, from a stream
        # of their own, so that a chip without the option draws exactly what it always did
        self._v_form: np.ndarray | None = None
        self._unformed: np.ndarray | None = None
        if p.forming.pristine:
            g0 = self._draw_pristine(code, g0)
        # per-cell state
        self._g_prog = g0.astype(np.float64)
        self._e_prog_rel = np.zeros(n)
        self._e_obs_rel = np.zeros(n)
        self._x_obs = np.zeros(n)
        self._rate_mean = np.zeros(n, dtype=f32)
        self._rate_var = np.zeros(n, dtype=f32)
        self._update_relax_rates(np.arange(n))
        self._damage = np.zeros(n)  # float64: 1e6 cycles of ~3e-7 must add up exactly
        self._cycles = np.zeros(n, dtype=np.uint32)
        self._clock = ThermalClock(p.retention, p.window.t_room_k)
        # 1/f read-noise states (cimlab.physics.read_noise), allocated at the first read of a
        # profile with flicker: unit OU states (n, K) and the chip time of each cell's last read
        self._flk_z: np.ndarray | None = None
        self._flk_t: np.ndarray | None = None
        self._tile_version = np.zeros(self.n_tiles, dtype=np.int64)
        self._tile_cache: dict[int, _TileCache] = {}
        self._wires: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._iv_read_cache: dict[float, float] = {}
        from cimlab.physics.truth import ChipTruth

        self.truth = ChipTruth(self)

    def _draw_pristine(self, code: np.ndarray, g0: np.ndarray) -> np.ndarray:
        """Per-cell forming voltages and the unformed state of a pristine chip (updates the
        fault codes ``code`` in place: cells that never form become stuck-off); returns the
        initial conductances [S]. V_form: ``N(v_form, v_form_sigma^2)`` [V], ``+inf`` for
        cells that never form (``p_never`` and the manufacturing stuck-off cells), NaN for the
        stuck-on (over-formed) cells, which need no forming. Pristine conductance: the
        unformed level ``faults.g_off`` with the lognormal spread ``faults.sigma``."""
        fm, ft = self.profile.forming, self.profile.faults
        ss = np.random.SeedSequence(self._seedseq.entropy,
                                    spawn_key=(*self._seedseq.spawn_key, 2000))
        rng = np.random.Generator(np.random.PCG64(ss))
        n = self.n_cells
        v_form = fm.v_form + fm.v_form_sigma * rng.standard_normal(n)
        never = (rng.random(n) < fm.p_never) & (code == faults.OK)
        g_pristine = ft.g_off * np.exp(ft.sigma * rng.standard_normal(n))
        code[never] = faults.STUCK_OFF
        v_form = np.where(code == faults.STUCK_OFF, np.inf, v_form)
        self._v_form = np.where(code == faults.STUCK_ON, np.nan, v_form)
        self._unformed = code == faults.OK
        return np.where(self._unformed | never, g_pristine, g0)

    def _form(self, idx: np.ndarray, polarity: str, v: Any, icc: np.ndarray,
              free: np.ndarray) -> np.ndarray:
        """Form the unformed cells among ``idx`` that a SET-polarity bias ``v`` [V] above their
        forming voltage reaches with current flowing (``icc`` > 0); returns ``free`` with the
        cells still unformed taken out (they ignore the pulse, like stuck cells)."""
        u = self._unformed[idx]
        if not u.any():
            return free
        if polarity == "set":
            forms = u & (np.asarray(v) > self._v_form[idx]) & (icc > 0.0)
            if forms.any():
                self._unformed[idx[forms]] = False
                u = u & ~forms
        return free & ~u

    def _read_sigma(self, idx: np.ndarray, g: Any) -> Any:
        """White read-noise std [S] of cells ``idx`` at true conductance ``g`` [S]: the
        profile's ``sqrt(floor^2 + (rel g)^2)``; a pristine chip's cell without a filament
        (unformed, or never forming) has none of the filament's fluctuation floor: ``rel g``."""
        rd = self.profile.read
        sigma = rd.sigma(g)
        if self._unformed is None:
            return sigma
        bare = self._unformed[idx] | np.isposinf(self._v_form[idx])
        return np.where(bare, rd.rel * np.asarray(g, dtype=float), sigma)

    def _set_profile(self, profile: ChipProfile) -> None:
        self.profile: ChipProfile = profile
        geo = profile.geometry
        self.rows, self.cols, self.n_tiles = geo.rows, geo.cols, geo.n_tiles
        self.tile_size = geo.rows * geo.cols
        self.n_cells = geo.n_tiles * self.tile_size

    # ------------------------------------------------------------------ geometry and time
    @property
    def geometry(self) -> tuple[int, int, int]:
        """``(n_tiles, rows, cols)``."""
        return (self.n_tiles, self.rows, self.cols)

    @property
    def time_s(self) -> float:
        """The chip's clock [s] (the last ``now_s`` seen or reached by ``advance``)."""
        return self._clock.time_s

    @property
    def equivalent_time_s(self) -> float:
        """Equivalent room-temperature time [s] integrated over the thermal history."""
        return self._clock.equivalent_s

    @property
    def ambient_k(self) -> float:
        """Temperature [K] at which gaps between ``now_s`` values pass (room by default)."""
        return self._clock.ambient_k

    @ambient_k.setter
    def ambient_k(self, value: float) -> None:
        if not (value > 0 and np.isfinite(value)):
            raise ValueError(f"ambient temperature must be a finite value > 0 K, got {value!r}")
        self._clock.ambient_k = float(value)

    def advance(self, dt_s: float, temperature_k: float) -> None:
        """Let ``dt_s`` [s] pass at ``temperature_k`` [K]: the chip clock moves by ``dt_s``,
        the equivalent time by ``dt_s * acceleration(temperature_k)``."""
        self._clock.advance(float(dt_s), float(temperature_k))

    @property
    def _e_prog(self) -> np.ndarray:
        """Absolute equivalent time [s] of each cell's last programming (a copy; kept for
        callers that used the private array; the public accessor is
        ``truth.programmed_time``)."""
        return self._e_prog_rel + self._clock.epoch_s

    #: epoch-relative equivalent time [s] beyond which the epoch is moved (rebase)
    REBASE_S = 1e3

    def _now(self, now_s: float) -> None:
        """Bring the clock to ``now_s`` and keep per-cell times epoch-relative and precise."""
        self._clock.catch_up(float(now_s))
        if self._clock.since_epoch_s > self.REBASE_S:
            shift = self._clock.rebase()
            self._e_prog_rel -= shift
            self._e_obs_rel -= shift
            for c in self._tile_cache.values():
                c.e_snap -= shift
                c.e_prog_max -= shift

    # ------------------------------------------------------------------ argument handling
    def _cells(self, cells: Any) -> np.ndarray:
        c = np.asarray(cells)
        if c.ndim == 0:
            c = c.reshape(1)
        if c.ndim != 1:
            raise ValueError(f"cells must be a 1-D array of flat cell indices, got shape {c.shape}")
        if c.size == 0:
            return c.astype(np.intp)
        if not np.issubdtype(c.dtype, np.integer):
            raise TypeError(f"cells must be integers, got dtype {c.dtype}")
        lo, hi = int(c.min()), int(c.max())
        if lo < 0 or hi >= self.n_cells:
            raise IndexError(f"cell index out of range [0, {self.n_cells}): {lo if lo < 0 else hi}")
        return c.astype(np.intp, copy=False)

    @staticmethod
    def _per_cell(x: Any, n: int, name: str, lo: float | None = None) -> np.ndarray | float:
        a = np.asarray(x, dtype=float)
        if a.ndim == 0:
            v = float(a)
            if not np.isfinite(v) or (lo is not None and v < lo):
                raise ValueError(f"{name} must be finite{'' if lo is None else f' and >= {lo}'}"
                                 f", got {v!r}")
            return v
        if a.shape != (n,):
            raise ValueError(f"{name} must be a scalar or have one value per cell ({n}), "
                             f"got shape {a.shape}")
        if not np.all(np.isfinite(a)) or (lo is not None and np.any(a < lo)):
            raise ValueError(f"{name} must be finite{'' if lo is None else f' and >= {lo}'}")
        return a

    # ------------------------------------------------------------------ hidden process
    def _update_relax_rates(self, idx: np.ndarray) -> None:
        rel = self.profile.relaxation
        g0 = self._g_prog[idx]
        ok = self._fault[idx] == faults.OK
        if self._unformed is not None:
            ok &= ~self._unformed[idx]
        self._rate_mean[idx] = np.where(ok, rel.mean_rate(g0), 0.0)
        self._rate_var[idx] = np.where(ok, rel.var_rate(g0), 0.0)

    def _observe(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """True conductance [S] of cells ``idx`` now (samples the relaxation process).

        A cell listed several times is observed once: every repeat gets the same value (one
        state at one instant; a second independent increment per repeat would double count
        the relaxation, issue 13 item 4)."""
        if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
            uniq, inverse = np.unique(idx, return_inverse=True)
            if uniq.size < idx.size:
                return self._observe(uniq, rng)[inverse]
        e_now = self._clock.since_epoch_s
        g, x = observe(
            self.profile.relaxation, self._g_prog[idx], self._rate_mean[idx],
            self._rate_var[idx], self._e_prog_rel[idx], self._e_obs_rel[idx], self._x_obs[idx],
            e_now, rng,
        )
        self._x_obs[idx] = x
        self._e_obs_rel[idx] = e_now
        return np.maximum(g, self.profile.window.g_phys_min)

    def _touch_tiles(self, idx: np.ndarray) -> None:
        if idx.size == 0:
            return
        t_lo = int(idx.min()) // self.tile_size
        t_hi = int(idx.max()) // self.tile_size
        if t_lo == t_hi:
            self._tile_version[t_lo] += 1
        else:
            self._tile_version[np.unique(idx // self.tile_size)] += 1

    # ------------------------------------------------------------------ operations
    def pulse(
        self,
        cells: Any,
        polarity: str,
        v_pulse: Any,
        v_gate: Any,
        width_s: Any,
        now_s: float,
        *,
        icc_a: Any = None,
    ) -> np.ndarray:
        """Apply one programming pulse to each of ``cells`` (unique flat indices).

        ``polarity`` "set" or "reset"; ``v_pulse`` [V] pulse amplitude (>= 0, bit line for SET,
        source line for RESET), ``v_gate`` [V] word-line voltage (sets the compliance
        ``I_cc = profile.transistor.icc(v_gate)``), ``width_s`` [s] (> 0); each a scalar or one
        value per cell. ``icc_a`` [A]: the compliance current itself (scalar or per cell),
        replacing the transistor's at ``v_gate`` (a DC bias through an SMU with its own current
        limit, :meth:`dc_bias`). Returns the energy drawn per cell [J].
        """
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be 'set' or 'reset', got {polarity!r}")
        idx = self._cells(cells)
        n = idx.size
        v = self._per_cell(v_pulse, n, "v_pulse", lo=0.0)
        vg = self._per_cell(v_gate, n, "v_gate")
        w = self._per_cell(width_s, n, "width_s", lo=0.0)
        if np.any(np.asarray(w) <= 0):
            raise ValueError("width_s must be > 0 s")
        self._now(now_s)
        if n == 0:
            return np.zeros(0)
        p = self.profile
        rng = self._rng
        d2d = self.d2d
        g = self._observe(idx, rng)
        if icc_a is None:
            tr = p.transistor
            ov_t = np.maximum(vg - tr.v_th - d2d["transistor_dv_th"][idx], 0.0)
            icc = 0.5 * tr.k_a_per_v2 * ov_t * ov_t
        else:
            icc = np.broadcast_to(np.asarray(self._per_cell(icc_a, n, "icc_a", lo=0.0)),
                                  (n,)).astype(float)
        z_target = rng.standard_normal(n)
        if polarity == "set":
            sw = p.set
            v_th = d2d["set_v_th"][idx]
            k = d2d["set_rate"][idx]
            target = icc / sw.v_c * d2d["ceil_factor"][idx] * np.exp(sw.ceil_c2c_sigma * z_target)
            gap = np.maximum(target - g, 0.0)
            sign = 1.0
        else:
            sw = p.reset
            v_th = d2d["reset_v_th"][idx]
            k = d2d["reset_rate"][idx]
            floor = (sw.g_floor_ref * np.exp(-(v - sw.v_ref) / sw.v_slope)
                     * d2d["floor_factor"][idx])
            depth = np.maximum(np.log(g / floor), 0.0)
            target = g * np.exp(-depth - sw.depth_sigma * np.minimum(depth, sw.depth_sat)
                                * z_target)
            gap = np.maximum(g - target, 0.0)
            # the access transistor must conduct for any current to flow
            gap = np.where(icc > 0.0, gap, 0.0)
            sign = -1.0
        over = np.maximum(v - v_th, 0.0)
        drive = sw.rate0 * k * w * sw.drive_shape(over) * sw.state_factor(g)
        f = -np.expm1(-drive)
        noise_var = p.step_noise.q * f * (1.0 - f) * gap
        step = f * gap + np.sqrt(noise_var) * rng.standard_normal(n)
        g_new = np.maximum(g + sign * step, p.window.g_phys_min)
        code = self._fault[idx]
        free = code == faults.OK
        if self._unformed is not None:
            free = self._form(idx, polarity, v, icc, free)
        # only a pulse with room to move changes g; every pulse above threshold that drives
        # current restarts relaxation (docs/physics.md: "a sub-threshold pulse does not
        # restart it"), also one that finds the cell at its SET ceiling or RESET floor:
        # the filament carried the programming current again. Before, such a pulse left the
        # old clock running, so a verify's last pulse was not the start of the cell's
        # relaxation (techa: 25 % of the cells, ~11 ms earlier; the onset fit came out late)
        moved = free & (f * gap > 0.0)
        restart = free & (f > 0.0) & (icc > 0.0)
        g_new = np.where(moved, g_new, g)
        energy = v * w * np.minimum(np.maximum(g, g_new) * v, icc)
        e_now = self._clock.since_epoch_s
        prog = idx[restart]
        self._g_prog[prog] = g_new[restart]
        self._e_prog_rel[prog] = e_now
        self._e_obs_rel[prog] = e_now
        self._x_obs[prog] = 0.0
        self._update_relax_rates(prog)
        # wear-out
        en = p.endurance
        if polarity == "set":
            dmg = f * en.d_set * (icc / en.i_ref) ** en.p
            self._cycles[idx] += (free & (f > 0.5)).astype(np.uint32)
        else:
            dmg = f * en.d_reset * np.exp((v - en.v_ref) / en.v_w)
        damage = self._damage[idx] + np.where(free, dmg, 0.0)
        self._damage[idx] = damage
        failed = free & (damage >= d2d["damage_limit"][idx])
        if np.any(failed):
            # frozen at its present conductance (relaxation included), for good
            fi = idx[failed]
            self._fault[fi] = faults.WORN
            self._g_prog[fi] = g_new[failed]
            self._e_prog_rel[fi] = e_now
            self._e_obs_rel[fi] = e_now
            self._x_obs[fi] = 0.0
            self._update_relax_rates(fi)
        self._touch_tiles(idx)
        return energy

    def _iv_factor(self, v_read: float) -> float:
        f = self._iv_read_cache.get(v_read)
        if f is None:
            f = float(self.profile.iv.current(1.0, v_read)) / v_read
            self._iv_read_cache[v_read] = f
        return f

    def read(self, cells: Any, now_s: float, v_read: float = 0.2) -> np.ndarray:
        """Conductance [S] of ``cells`` (unique flat indices) read at ``v_read`` [V]
        (current / v_read): the true conductance (relaxation and retention included) with I-V
        nonlinearity and one independent read-noise draw ``N(0, sigma(g))`` (profile.read)."""
        v_read = float(v_read)
        if not (v_read > 0 and np.isfinite(v_read)):
            raise ValueError(f"v_read must be a finite value > 0 V, got {v_read!r}")
        idx = self._cells(cells)
        self._now(now_s)
        if idx.size == 0:
            return np.zeros(0)
        g = self._observe(idx, self._rng)
        rd = self.profile.read
        sigma = self._read_sigma(idx, g)
        g_read = g + sigma * self._rng.standard_normal(idx.size)
        if rd.flicker_psd_peak > 0.0:
            g_read += self._flicker(idx, g)
        return g_read * self._iv_factor(v_read)

    def _flicker(self, idx: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The 1/f part [S] of reads of cells ``idx`` (true conductances ``g``) now: their OU
        banks advanced to the chip time (cimlab.physics.read_noise). A cell listed several
        times has one value (one instant)."""
        rd = self.profile.read
        if self._flk_z is None:
            k = flicker.corner_frequencies(rd).size
            self._flk_z = np.zeros((self.n_cells, k), dtype=np.float32)
            self._flk_t = np.full(self.n_cells, np.nan)
        uniq, inverse = idx, None
        if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
            uniq, inverse = np.unique(idx, return_inverse=True)
            if uniq.size == idx.size:
                uniq, inverse = idx, None
        t_now = self._clock.time_s
        z = flicker.advance(self._flk_z[uniq], self._flk_t[uniq], t_now, rd, self._rng)
        self._flk_z[uniq] = z
        self._flk_t[uniq] = t_now
        if inverse is None:
            g_u = g
        else:  # repeats of a cell carry the same g (one observation, see _observe)
            g_u = np.empty(uniq.size)
            g_u[inverse] = g
        f = flicker.flicker_values(rd, z, g_u)
        return f if inverse is None else f[inverse]

    def cell_current(self, cell: int, v: Any, now_s: float) -> Any:
        """DC current [A] of one cell at bias ``v`` [V] (scalar or array, e.g. a sweep), as an
        SMU measures it through the routed cell: I-V nonlinearity (profile.iv) and the cell's
        read fluctuation (one independent draw per value)."""
        if not isinstance(cell, numbers.Integral):
            raise TypeError(f"cell must be one integer index, got {cell!r}")
        idx = self._cells(np.array([int(cell)]))
        va = np.asarray(v, dtype=float)
        if not np.all(np.isfinite(va)):
            raise ValueError("v must be finite")
        self._now(now_s)
        g = float(self._observe(idx, self._rng)[0])
        sigma = float(self._read_sigma(idx, g)[0]) if self._unformed is not None else float(
            self.profile.read.sigma(g))
        g_draw = g + sigma * self._rng.standard_normal(va.shape)
        if self.profile.read.flicker_psd_peak > 0.0:
            g_draw = g_draw + float(self._flicker(idx, np.array([g]))[0])
        i = self.profile.iv.current(g_draw, va)
        return float(i) if np.ndim(i) == 0 else i

    def dc_bias(self, cell: int, v: float, dwell_s: float, now_s: float, *,
                v_gate: float | None = None, i_limit_a: float = np.inf
                ) -> tuple[float, float, bool]:
        """Hold the DC voltage ``v`` [V] across one routed 1T1R cell for ``dwell_s`` [s] (one
        step of a quasi-static SMU sweep) and measure it: ``(v_terminal, i, limited)``.

        The cell switches as under a pulse of width ``dwell_s`` (:meth:`pulse`: the same
        thresholds, kinetics, SET ceiling and RESET floor, so DC sweeps and pulses agree):
        SET for ``v > 0``, RESET for ``v < 0``, at the cell voltage, which the compliance
        ``I_cap = min(I_tr, i_limit_a)`` lowers when the cell would draw more (the voltage then
        drops over the transistor or the SMU backs off). ``I_tr`` is the access transistor's
        saturation current at ``v_gate`` [V] (None: word line fully on, no transistor limit);
        with the bit line negative the transistor's source is the bit-line node, so its
        gate-source voltage is ``v_gate + |v|`` (1T1R RESET polarity; body effect and the
        linear region are not modelled). Below the cell's threshold nothing switches and no
        random number is drawn beyond the measurement's, so low-voltage SMU reads are those of
        :meth:`cell_current`. The measured current is :meth:`cell_current` capped at ``I_tr``
        (transistor saturation); beyond ``i_limit_a`` the SMU is in compliance: it returns the
        limit, the backed-off terminal voltage and ``limited`` True. An unformed cell of a
        pristine chip switches only at a positive ``v`` above its forming voltage: it forms
        (:meth:`_form`) and SETs to the transistor-limited ceiling in that step.
        """
        if not isinstance(cell, numbers.Integral):
            raise TypeError(f"cell must be one integer index, got {cell!r}")
        idx = self._cells(np.array([int(cell)]))
        c = int(idx[0])
        v = float(v)
        if not (np.isfinite(v) and dwell_s >= 0 and i_limit_a > 0):
            raise ValueError(f"dc_bias needs a finite v, dwell_s >= 0 and i_limit_a > 0; got "
                             f"{v!r}, {dwell_s!r}, {i_limit_a!r}")
        p = self.profile
        if v_gate is None:
            i_tr = np.inf
        else:
            vgs = float(v_gate) + (abs(v) if v < 0 else 0.0)
            i_tr = float(p.transistor.icc(vgs, float(self.d2d["transistor_dv_th"][c])))
        cap = min(i_tr, float(i_limit_a))
        thr = float(self.d2d["set_v_th"][c] if v > 0 else self.d2d["reset_v_th"][c])
        if self._unformed is not None and self._unformed[c]:
            # a pristine cell: only a positive bias above its forming voltage does anything;
            # the forming transient (ns) is faster than the SMU's limit loop (us), so the
            # filament grows to the transistor's current, not the SMU limit (Tirano et al.,
            # Microelectron. Eng. 88, 1129 (2011): forming overshoot without a transistor)
            thr = float(self._v_form[c]) if v > 0 else np.inf
            if v_gate is not None:
                cap = i_tr
        if dwell_s > 0 and v != 0.0 and abs(v) > thr and cap > 0:
            self._now(now_s)
            g = float(self._observe(idx, self._rng)[0])
            i_free = abs(float(p.iv.current(g, abs(v))))
            v_cell = abs(v) * min(1.0, cap / i_free) if i_free > 0 else abs(v)
            if v_cell > thr:
                self.pulse(idx, "set" if v > 0 else "reset", v_cell, 0.0, dwell_s, now_s,
                           icc_a=cap)
        i = float(self.cell_current(c, v, now_s))
        a = abs(i)
        if a > i_tr:  # the transistor saturates: the excess voltage drops across it
            i, a = float(np.sign(i)) * i_tr, i_tr
        if a > i_limit_a:  # in compliance: the SMU backs its voltage off to the limit
            return v * i_limit_a / a, float(np.sign(i)) * float(i_limit_a), True
        return v, i, False

    # ------------------------------------------------------------------ crossbar
    def wires(self, tile: int) -> tuple[np.ndarray, np.ndarray]:
        """Wire segment resistances ``(r_row, r_col)`` [ohm] of ``tile``, each ``rows x cols``
        (drawn once per tile from the chip seed; see crossbar.py for the topology)."""
        self._check_tile(tile)
        w = self._wires.get(tile)
        if w is None:
            ss = np.random.SeedSequence(self._seedseq.entropy,
                                        spawn_key=(*self._seedseq.spawn_key, 1000, tile))
            wp = self.profile.wires
            w = crossbar.draw_wires(self.rows, self.cols, wp.r_mean_ohm, wp.r_var_ohm2,
                                    wp.r_min_ohm, np.random.Generator(np.random.PCG64(ss)))
            self._wires[tile] = w
        return w

    def _check_tile(self, tile: Any) -> None:
        if not isinstance(tile, numbers.Integral) or not 0 <= int(tile) < self.n_tiles:
            raise IndexError(f"tile must be an integer in [0, {self.n_tiles}), got {tile!r}")

    def clear_caches(self) -> None:
        """Drop the per-tile MVM snapshots (conductances + transfer matrices); the next MVM of
        each tile takes a fresh one (a new read-noise draw), so results after this differ
        from a chip that kept its snapshots. The cells themselves are unchanged."""
        self._tile_cache.clear()

    def _tile_state(self, tile: int, rng: np.random.Generator | None = None) -> _TileCache:
        """Cached conductance snapshot and transfer matrix of ``tile``, rebuilt when a cell of
        the tile was pulsed since, or when the relaxation log-time of its youngest cell has
        moved by more than ``profile.wires.mvm_dlog`` decades."""
        e_now = self._clock.since_epoch_s
        c = self._tile_cache.get(tile)
        if c is not None and c.version == self._tile_version[tile]:
            rel = self.profile.relaxation
            moved = rel.log_time(e_now - c.e_prog_max) - rel.log_time(c.e_snap - c.e_prog_max)
            if moved <= self.profile.wires.mvm_dlog:
                return c
        idx = np.arange(tile * self.tile_size, (tile + 1) * self.tile_size)
        g = self._observe(idx, rng or self._rng).reshape(self.rows, self.cols)
        r_row, r_col = self.wires(tile)
        t = crossbar.transfer_matrix(g, r_row, r_col)
        s2 = np.asarray(self.profile.read.sigma(g)) ** 2
        c = _TileCache(int(self._tile_version[tile]), e_now, float(self._e_prog_rel[idx].max()),
                       g, s2, t)
        self._tile_cache[tile] = c
        return c

    def mvm(
        self,
        tile: int,
        v_rows: Any,
        now_s: float,
        *,
        ir_drop: bool = True,
        read_noise: bool = True,
        first_row: int | None = None,
    ) -> np.ndarray:
        """Column currents [A] of ``tile`` for row voltages ``v_rows`` [V], shape ``(rows,)``
        or ``(batch, rows)`` -> ``(cols,)`` or ``(batch, cols)``. With ``first_row``,
        ``v_rows`` (shape ``(n,)`` or ``(batch, n)``) drives the window of rows
        ``first_row .. first_row + n - 1`` (every other row at 0 V): the same currents as the
        full vector with zeros elsewhere.

        Exact nodal solution with the tile's wire resistances (``ir_drop=False``: ideal wires,
        ``I = v @ G``) plus output-referred read noise with variance
        ``sum_i (sigma_G_ij v_i)^2`` (``read_noise=False``: none). With a 1/f read-noise
        profile (``profile.read.flicker_psd_peak > 0``) every cell of the tile also carries
        its 1/f value at this instant, the same OU bank state that :meth:`read` advances
        (one value per cell for the whole batch, which is one instant), added as
        ``v @ F`` (first order: the flicker offsets are not fed through the IR-drop
        solution). Cells are treated as linear at the read bias. The tile's conductances are
        sampled when its cache is (re)built (see :meth:`_tile_state`), so repeated MVMs
        within ``mvm_dlog`` see the same conductances (plus fresh read noise)."""
        self._check_tile(tile)
        v = np.asarray(v_rows, dtype=float)
        n = v.shape[-1] if v.ndim in (1, 2) else -1
        if first_row is None:
            first = 0
            if n != self.rows:
                raise ValueError(f"v_rows must have shape ({self.rows},) or (batch, "
                                 f"{self.rows}), got {v.shape}")
        else:
            first = int(first_row)
            if v.ndim not in (1, 2) or not (0 <= first and 1 <= n <= self.rows - first):
                raise ValueError(f"v_rows must have shape (n,) or (batch, n) with 1 <= n <= "
                                 f"{self.rows} - first_row, first_row >= 0; got {v.shape} "
                                 f"and first_row {first_row}")
        if not np.all(np.isfinite(v)):
            raise ValueError("v_rows must be finite")
        self._now(now_s)
        c = self._tile_state(int(tile))
        t, g, s2 = c.t, c.g, c.s2
        rows = np.arange(self.rows)
        if n < self.rows:  # a window of rows: the others are at 0 V
            sl = slice(first, first + n)
            t, g, s2, rows = t[:, sl], g[sl], s2[sl], rows[sl]
        # rows held at 0 V on every vector add no current and no noise: leave them out of the
        # products (a network layer drives rows_per_mvm of the tile's rows)
        active = np.flatnonzero(np.any(v != 0.0, axis=0) if v.ndim == 2 else v != 0.0)
        if active.size < rows.size:
            v, t, g, s2, rows = (v[..., active], t[:, active], g[active], s2[active],
                                 rows[active])
        i = v @ t.T if ir_drop else v @ g
        if read_noise:
            sd = np.sqrt((v * v) @ s2)
            i = i + sd * self._rng.standard_normal(sd.shape)
            if self.profile.read.flicker_psd_peak > 0.0:  # the driven rows' 1/f values now
                idx = ((tile * self.rows + rows)[:, None] * self.cols
                       + np.arange(self.cols)).reshape(-1)
                i = i + v @ self._flicker(idx, g.reshape(-1)).reshape(g.shape)
        return i
