"""A generic, measured pulse-response model for adaptive program-verify
(:class:`TabulatedResponse`) and the batched random-walk sweep that fills it
(:func:`measure_tabulated_response`).

No physical form is assumed. The model is a table: for every pulse setting (polarity,
amplitude, word-line voltage) the mean conductance after the pulse as a function of the
conductance read before it, on a grid of conductances, and the spread of the outcome around
that mean (robust, from the residuals, as a function of the predicted step). The only
structure imposed is monotonicity, which any ReRAM cell shows: the conductance after a pulse
does not fall when the conductance before it is higher; a stronger pulse of a polarity (higher
amplitude; for SET a higher word-line voltage too) moves the cell at least as far; a SET does
not lower the conductance and a RESET does not raise it (the polarities' definition). The table
is fitted by weighted isotonic regression along each of these axes in turn.

The data come from a random walk: every cell of the calibration subset gets ``walk_rounds``
pulses of random polarity and random setting, each followed by a read, so every pulse is one
observation (conductance before, setting, conductance after) and the cells visit the whole
window. A saturating SET at each word-line voltage (from a deep RESET) is measured apart, as
for the parametric model: it is the loop's one-pulse landing move (the 1T1R compliance sets
the level, Ielmini 2011; used here only as a measured, monotone gate -> level curve).
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.ceiling_sweep import measure_ceilings
from cimlab.procedures.verify_config import RESET, SET, ProgramVerifyConfig, _grid
from cimlab.stats import robust_sigma

#: conductance nodes of the table
N_NODES = 24
#: word-line voltages of the partial-SET table (spread over the measured landing levels)
N_SET_GATES = 6


@dataclass(frozen=True)
class TabulatedResponse:
    """Measured mean pulse response on a grid, no physical form (module docstring).

    ``g_nodes`` [S]: conductances before the pulse. ``set_mean[j, a, m]`` [S]: mean
    conductance after a SET of amplitude ``set_v[a]`` at word-line voltage ``set_gate[j]``
    from ``g_nodes[m]``; ``reset_mean[a, m]`` the same for a RESET of amplitude ``reset_v[a]``
    at ``reset_gate``. ``*_sd_step`` / ``*_sd`` [S]: the outcome's spread (cells and cycles)
    against the magnitude of the mean step. ``gate_v`` / ``ceiling_siemens``: the level a
    saturating SET (``v_set_sat``) leaves at each word-line voltage (median over cells,
    relative spread ``ceiling_rel_sd``).
    """

    gate_v: np.ndarray
    ceiling_siemens: np.ndarray
    ceiling_rel_sd: float
    v_set_sat: float
    g_nodes: np.ndarray
    set_gate: np.ndarray
    set_v: np.ndarray
    set_mean: np.ndarray
    reset_gate: float
    reset_v: np.ndarray
    reset_mean: np.ndarray
    set_sd_step: np.ndarray
    set_sd: np.ndarray
    reset_sd_step: np.ndarray
    reset_sd: np.ndarray
    n_cells: int = 0
    n_observations: int = 0
    round_trips: int = 0
    kind: str = "tabulated"

    # ---------------------------------------------------------------- landing curve
    def gate_for_ceiling(self, g: np.ndarray) -> np.ndarray:
        """Word-line voltage whose saturating SET leaves ``g`` [S] on average (NaN outside
        the measured range)."""
        c = np.maximum.accumulate(self.ceiling_siemens)
        keep = np.concatenate([[True], np.diff(c) > 0])
        return np.interp(g, c[keep], self.gate_v[keep], left=np.nan, right=np.nan)

    def ceiling_at(self, v_gate: np.ndarray) -> np.ndarray:
        return np.interp(v_gate, self.gate_v, np.maximum.accumulate(self.ceiling_siemens))

    # ---------------------------------------------------------------- predictions
    def _at(self, table: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Mean conductance after each setting of ``table`` (..., m) from ``g`` (n,):
        (n, ...). Linear between nodes; outside them the step of the end node is kept."""
        x = self.g_nodes
        i = np.clip(np.searchsorted(x, g) - 1, 0, x.size - 2)
        t = np.clip((g - x[i]) / (x[i + 1] - x[i]), 0.0, 1.0)
        step = table - x                                   # (..., m)
        s = np.moveaxis(step, -1, 0)                       # (m, ...)
        t = t.reshape((-1,) + (1,) * (s.ndim - 1))
        return g.reshape(t.shape) + (1 - t) * s[i] + t * s[i + 1]

    def mean_after(self, direction: int, g: np.ndarray) -> np.ndarray:
        """Mean conductance [S] after each setting from ``g`` (n,): SET (n, gates, amps),
        RESET (n, amps)."""
        g = np.asarray(g, dtype=float)
        if direction == SET:
            return np.maximum(self._at(self.set_mean, g), g.reshape(-1, 1, 1))
        return np.minimum(self._at(self.reset_mean, g), g.reshape(-1, 1))

    def spread(self, direction: int, step: np.ndarray) -> np.ndarray:
        """Spread [S] of the outcome of a pulse whose mean step is ``step`` [S]."""
        xs, ys = ((self.set_sd_step, self.set_sd) if direction == SET
                  else (self.reset_sd_step, self.reset_sd))
        return np.interp(np.abs(step), xs, ys)

    # ---------------------------------------------------------------- loop interface
    def set_candidates(self, g: np.ndarray, tgt: np.ndarray, kappa: np.ndarray,
                       gain: np.ndarray, n_obs: np.ndarray, tol: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Partial SETs: amplitudes, gates, mean steps and spreads (n, gates * amps) of every
        tabulated setting; ``gain``: the cell's learned step factor, ``n_obs`` its
        observations (half the tabulated variance is taken as the cells' own, which the gain
        learns; a planning assumption)."""
        n = g.size
        step = (self.mean_after(SET, g) - g[:, None, None]).reshape(n, -1)
        step = step * gain[:, None]
        sd = self.spread(SET, step) * np.sqrt(0.5 + 0.5 / (1.0 + n_obs))[:, None]
        vg = np.repeat(self.set_gate, self.set_v.size)
        vp = np.tile(self.set_v, self.set_gate.size)
        return (np.broadcast_to(vp, step.shape), np.broadcast_to(vg, step.shape), step, sd)

    def reset_candidates(self, g: np.ndarray, gain: np.ndarray, n_obs: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Partial RESETs: amplitudes (k,), mean steps (n, k) and spreads (n, k)."""
        step = (self.mean_after(RESET, g) - g[:, None]) * gain[:, None]
        sd = self.spread(RESET, step) * np.sqrt(0.5 + 0.5 / (1.0 + n_obs))[:, None]
        return self.reset_v, step, sd

    def deep_reset(self, g: np.ndarray) -> tuple[float, np.ndarray]:
        """The strongest RESET: amplitude [V] and mean step [S] (n,)."""
        return float(self.reset_v[-1]), self.mean_after(RESET, g)[:, -1] - g

    def bump(self, direction: int, k: np.ndarray, boost: np.ndarray) -> np.ndarray:
        """Candidate index ``boost`` amplitude steps above ``k`` (same gate)."""
        if direction == SET:
            na = self.set_v.size
            return (k // na) * na + np.minimum(k % na + boost, na - 1)
        return np.minimum(k + boost, self.reset_v.size - 1)

    def __post_init__(self) -> None:
        # tables held at float32 precision (~1e-7 relative, far below any read noise), so
        # to_dict() can write them compactly (run metadata < 60 kB) and from_dict() gives
        # back exactly this model (a resumed run plans as the uninterrupted one)
        for name in _TABLES:
            object.__setattr__(self, name, _f32(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping; the two tables as base64 of little-endian float32 with
        their shapes (``{"f32_b64": ..., "shape": [...]}``)."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k in _TABLES:
                out[k] = {"f32_b64": base64.b64encode(v.astype("<f4").tobytes()).decode(),
                          "shape": list(v.shape)}
            else:
                out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabulatedResponse:
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and "f32_b64" in v:
                a = np.frombuffer(base64.b64decode(v["f32_b64"]), dtype="<f4")
                kw[k] = a.astype(float).reshape(v["shape"])
            else:
                kw[k] = np.asarray(v, dtype=float) if isinstance(v, list) else v
        return cls(**kw)


_TABLES = ("set_mean", "reset_mean")


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=float).astype(np.float32).astype(float)


# -------------------------------------------------------------------- fitting
def _pava(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression, pool adjacent violators."""
    vals: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        vals.append(yi)
        wts.append(wi)
        lens.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum if wsum > 0 else \
                0.5 * (vals[-2] + vals[-1])
            vals[-2:] = [v]
            wts[-2:] = [wsum]
            lens[-2:] = [lens[-2] + lens[-1]]
    return np.repeat(vals, lens)


def _isotonic_along(a: np.ndarray, w: np.ndarray, axis: int, increasing: bool) -> np.ndarray:
    """Isotonic regression of ``a`` along ``axis`` (weights ``w``), for every other index."""
    a2 = np.moveaxis(a, axis, -1)
    w2 = np.moveaxis(w, axis, -1)
    out = np.empty_like(a2)
    sign = 1.0 if increasing else -1.0
    for idx in np.ndindex(a2.shape[:-1]):
        out[idx] = sign * _pava(sign * a2[idx], w2[idx] + 1e-9)
    return np.moveaxis(out, -1, axis)


def _tent(x: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left node index and weight of the right node for linear ('tent') binning."""
    i = np.clip(np.searchsorted(nodes, x) - 1, 0, nodes.size - 2)
    t = np.clip((x - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)
    return i, t


def _fit_table(keys: np.ndarray, n_settings: int, g0: np.ndarray, g1: np.ndarray,
               nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tent-weighted mean step per (setting, node) -> mean after (settings, m), weights."""
    i, t = _tent(g0, nodes)
    m = nodes.size
    sw = np.zeros(n_settings * m)
    sy = np.zeros(n_settings * m)
    step = g1 - g0
    for node, wt in ((i, 1 - t), (i + 1, t)):
        np.add.at(sw, keys * m + node, wt)
        np.add.at(sy, keys * m + node, wt * step)
    sw, sy = sw.reshape(n_settings, m), sy.reshape(n_settings, m)
    mean_step = np.where(sw > 0, sy / np.maximum(sw, 1e-12), np.nan)
    # nodes without data: the step of the nearest nodes with data (interpolated)
    for s in range(n_settings):
        ok = np.isfinite(mean_step[s])
        if not ok.any():
            mean_step[s] = 0.0
        elif not ok.all():
            mean_step[s] = np.interp(nodes, nodes[ok], mean_step[s, ok])
    return nodes + mean_step, sw


def _monotone(table: np.ndarray, w: np.ndarray, axes: list[tuple[int, bool]],
              nodes: np.ndarray, direction: int, passes: int = 4) -> np.ndarray:
    """Alternating isotonic projections along ``axes`` (axis, increasing), a final running
    max / min that makes every axis exactly monotone, and the polarity bound (SET: after >=
    before; RESET: after <= before)."""
    for _ in range(passes):
        for ax, inc in axes:
            table = _isotonic_along(table, w, ax, inc)
    # exact in every axis at once: a running max (min) along one axis keeps the monotonicity
    # along the others (a max of non-decreasing functions is non-decreasing)
    for ax, inc in axes:
        table = (np.maximum if inc else np.minimum).accumulate(table, axis=ax)
    return np.maximum(table, nodes) if direction == SET else np.minimum(table, nodes)


def _spread_curve(step: np.ndarray, resid: np.ndarray, bins: int = 12
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Robust spread of ``resid`` in quantile bins of |predicted step|, non-decreasing."""
    a = np.abs(step)
    ok = np.isfinite(a) & np.isfinite(resid)
    a, r = a[ok], resid[ok]
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)))
    xs, ys, ws = [], [], []
    for lo, hi in itertools.pairwise(edges):
        m = (a >= lo) & (a <= hi)
        if m.sum() >= 8:
            xs.append(float(np.median(a[m])))
            ys.append(robust_sigma(r[m]))
            ws.append(float(m.sum()))
    if not xs:
        return np.array([0.0, 1.0]), np.full(2, robust_sigma(r) if r.size > 2 else 1e-6)
    ys_m = _pava(np.asarray(ys), np.asarray(ws))
    return np.asarray(xs), np.maximum(ys_m, 1e-9)


def measure_tabulated_response(ops: ArrayOps, cells: np.ndarray, cfg: ProgramVerifyConfig,
                               rng: np.random.Generator) -> TabulatedResponse:
    """Fill :class:`TabulatedResponse` from a batched sweep on ``cells``.

    1. landing levels: ``cfg.calibration_rounds`` rounds of deep RESET, saturating SET at a
       random word-line voltage (0.025 V grid), read;
    2. random walk: a deep RESET and a read, then ``4 cfg.calibration_rounds`` rounds of one
       pulse per cell (random polarity, random amplitude on the ``fine_step_v`` grid; SETs at
       one of ``N_SET_GATES`` word-line voltages whose landing levels are spread
       geometrically from 5x the deep-RESET level to the top) and one read.
    """
    rt0 = ops.round_trips
    cells = np.asarray(cells, dtype=np.uint32)
    n = cells.size
    R = cfg.calibration_rounds
    gates, ceiling, rel = measure_ceilings(ops, cells, cfg, rng)
    c_mono = np.maximum.accumulate(ceiling)
    top = float(c_mono[-1])
    big = ceiling > 0.1 * top
    ceiling_rel_sd = float(np.nanmedian(rel[big] if big.any() else rel))
    # 2. random walk
    ops.pulse(cells, RESET, cfg.v_reset_max, cfg.v_gate_reset, cfg.width_s)
    g = ops.read(cells)
    g_deep = float(np.median(g))
    keep = np.concatenate([[True], np.diff(c_mono) > 0])
    lo_level = max(min(5 * g_deep, 0.5 * top), 1e-12)
    levels = np.geomspace(lo_level, max(top, 2 * lo_level), N_SET_GATES)
    set_gate = np.unique(np.round(np.interp(levels, c_mono[keep], gates[keep]), 4))
    set_v = _grid(cfg.v_set_start, cfg.v_set_max, cfg.fine_step_v)
    reset_v = _grid(cfg.v_reset_start, cfg.v_reset_max, cfg.fine_step_v)
    obs = {SET: ([], [], []), RESET: ([], [], [])}
    for _ in range(4 * R):
        d = np.where(rng.random(n) < 0.5, SET, RESET)
        key = np.where(d == SET, rng.integers(0, set_gate.size * set_v.size, n),
                       rng.integers(0, reset_v.size, n))
        vp = np.where(d == SET, set_v[key % set_v.size],
                      reset_v[np.minimum(key, reset_v.size - 1)])
        vg = np.where(d == SET, set_gate[key // set_v.size], cfg.v_gate_reset)
        ops.pulse(cells, d, vp, vg, cfg.width_s)
        g_new = ops.read(cells)
        for pol in (SET, RESET):
            m = d == pol
            obs[pol][0].append(key[m])
            obs[pol][1].append(g[m])
            obs[pol][2].append(g_new[m])
        g = g_new
    data = {p: tuple(np.concatenate(x) for x in v) for p, v in obs.items()}
    g_before = np.concatenate([data[SET][1], data[RESET][1]])
    lo, hi = np.quantile(g_before, [0.01, 0.995])
    nodes = np.unique(np.geomspace(max(lo, 1e-9), max(hi, 2 * lo, 1e-8), N_NODES))
    # SET table (gates, amps, m): more gate, more amplitude, more G before -> more G after
    k, x0, x1 = data[SET]
    st, sw = _fit_table(k, set_gate.size * set_v.size, x0, x1, nodes)
    shape = (set_gate.size, set_v.size, nodes.size)
    set_mean = _monotone(st.reshape(shape), sw.reshape(shape),
                         [(2, True), (1, True), (0, True)], nodes, SET)
    # RESET table (amps, m): more amplitude -> less G after; more G before -> more G after
    kr, r0, r1 = data[RESET]
    rt, rw = _fit_table(kr, reset_v.size, r0, r1, nodes)
    reset_mean = _monotone(rt, rw, [(1, True), (0, False)], nodes, RESET)
    model = TabulatedResponse(
        gate_v=gates, ceiling_siemens=ceiling, ceiling_rel_sd=ceiling_rel_sd,
        v_set_sat=cfg.v_set_max, g_nodes=nodes, set_gate=set_gate, set_v=set_v,
        set_mean=set_mean, reset_gate=cfg.v_gate_reset, reset_v=reset_v,
        reset_mean=reset_mean, set_sd_step=np.zeros(2), set_sd=np.zeros(2),
        reset_sd_step=np.zeros(2), reset_sd=np.zeros(2), n_cells=int(n),
        n_observations=int(k.size + kr.size), round_trips=ops.round_trips - rt0)
    # spreads from the residuals of the fitted means
    p_set = model.mean_after(SET, x0).reshape(x0.size, -1)[np.arange(x0.size), k]
    p_rst = model.mean_after(RESET, r0)[np.arange(r0.size), kr]
    xs, ys = _spread_curve(p_set - x0, x1 - p_set)
    xr, yr = _spread_curve(p_rst - r0, r1 - p_rst)
    return _replace(model, set_sd_step=xs, set_sd=ys, reset_sd_step=xr, reset_sd=yr)


def _replace(m: TabulatedResponse, **kw: Any) -> TabulatedResponse:
    d = dict(m.__dict__)
    d.update(kw)
    return TabulatedResponse(**d)


