"""Reference programming experiments run on the physics directly (calibration evidence).

These are NOT the calibration procedures (those drive the chip through the instruments); they
exist to show that the default profile meets its calibration targets, and the tests in
tests/physics use them:

* :func:`single_shot_experiment`: RESET to the floor, then ONE SET pulse whose gate voltage is
  read off the *mean* response curve (gate voltage -> mean G after one pulse, measured on a
  separate subset of cells). Target (paper 000): programming error sigma ~0.07 of the window.
* :func:`reference_verify`: a short vectorised program-verify (compliance-controlled SET,
  adaptive per-cell RESET/SET amplitudes) proving that +-1 uS with > 99.8% success and < 8
  pulses per cell on average is reachable (published RADAR: ~8.7 pulses, 99.8%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimlab.physics.chip import ReRAMChip

#: Analog RESET used by the experiments: deep enough that the floor (median ~1.1 uS) lies
#: below the window, gate fully on.
RESET_V, RESET_GATE_V, RESET_WIDTH_S = 3.0, 3.0, 1e-6
#: SET pulse of single-shot programming: strong enough to reach the compliance ceiling.
SET_V, SET_WIDTH_S = 2.0, 1e-6


@dataclass
class Clock:
    """A trivial virtual clock for experiments: each operation takes ``dt_s``."""

    now_s: float = 0.0
    dt_s: float = 1e-6

    def tick(self) -> float:
        self.now_s += self.dt_s
        return self.now_s


def response_curve(
    chip: ReRAMChip, cells: np.ndarray, v_gates: np.ndarray, clock: Clock, repeats: int = 1
) -> np.ndarray:
    """Mean conductance [S] after RESET + one SET at each gate voltage (cells split across
    the gate voltages; ``repeats`` passes with the assignment rotated)."""
    n_v = len(v_gates)
    sums = np.zeros(n_v)
    counts = np.zeros(n_v)
    for r in range(repeats):
        which = (np.arange(cells.size) + r) % n_v
        chip.pulse(cells, "reset", RESET_V, RESET_GATE_V, RESET_WIDTH_S, clock.tick())
        chip.pulse(cells, "set", SET_V, v_gates[which], SET_WIDTH_S, clock.tick())
        g = chip.read(cells, clock.tick())
        sums += np.bincount(which, weights=g, minlength=n_v)
        counts += np.bincount(which, minlength=n_v)
    return sums / counts


def gate_for_target(v_gates: np.ndarray, g_mean: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Invert the (monotone-enforced) mean response curve by linear interpolation."""
    g_mono = np.maximum.accumulate(g_mean)
    keep = np.concatenate([[True], np.diff(g_mono) > 0])
    return np.interp(targets, g_mono[keep], v_gates[keep])


@dataclass
class SingleShotResult:
    targets_siemens: np.ndarray        # per level
    sigma_siemens: np.ndarray          # programming error std per level [S]
    mean_error_siemens: np.ndarray     # per level [S]
    sigma_pooled_siemens: float        # sqrt(mean of per-level variances) [S]
    sigma_over_range: float      # sigma_pooled / (g_max - g_min)
    n_per_level: int


def single_shot_experiment(
    chip: ReRAMChip,
    n_levels: int = 8,
    n_per_level: int = 1024,
    n_curve: int = 4096,
    n_gates: int = 48,
    clock: Clock | None = None,
) -> SingleShotResult:
    """Single-shot programming error on tile 0 (curve cells taken from tile 1); stuck cells
    excluded (a fault map finds them)."""
    clock = clock or Clock()
    w = chip.profile.window
    tr = chip.profile.transistor
    ok = chip.truth.stuck_mask() == 0
    tile = np.arange(chip.tile_size)
    curve_cells = (chip.tile_size + tile)[ok[chip.tile_size + tile]][:n_curve]
    g_lo = tr.v_gate_for_icc(0.2 * w.g_min * chip.profile.set.v_c)
    g_hi = tr.v_gate_for_icc(1.3 * w.g_max * chip.profile.set.v_c)
    v_gates = np.linspace(g_lo, g_hi, n_gates)
    g_mean = response_curve(chip, curve_cells, v_gates, clock, repeats=4)
    targets = np.linspace(w.g_min, w.g_max, n_levels)
    cells = tile[ok[tile]][: n_levels * n_per_level]
    level = np.arange(cells.size) % n_levels
    vg = gate_for_target(v_gates, g_mean, targets)[level]
    chip.pulse(cells, "reset", RESET_V, RESET_GATE_V, RESET_WIDTH_S, clock.tick())
    chip.pulse(cells, "set", SET_V, vg, SET_WIDTH_S, clock.tick())
    err = chip.read(cells, clock.tick()) - targets[level]
    sig = np.array([err[level == k].std(ddof=1) for k in range(n_levels)])
    mean = np.array([err[level == k].mean() for k in range(n_levels)])
    pooled = float(np.sqrt(np.mean(sig**2)))
    return SingleShotResult(targets, sig, mean, pooled, pooled / (w.g_max - w.g_min),
                            int(cells.size // n_levels))


@dataclass
class VerifyResult:
    targets_siemens: np.ndarray
    g_true_siemens: np.ndarray         # noiseless conductance right after the last pulse [S]
    g_read_siemens: np.ndarray         # one fresh read after verify [S]
    pulses: np.ndarray           # programming pulses per cell (incl. the initial RESET + SET)
    energy_j: np.ndarray         # per cell [J]
    success_rate: float          # fraction with |g_true - target| <= tol
    mean_pulses: float
    iterations: int


def reference_verify(
    chip: ReRAMChip,
    cells: np.ndarray,
    targets: np.ndarray,
    tol_siemens: float = 1e-6,
    band_siemens: float = 0.5e-6,
    max_iter: int = 30,
    clock: Clock | None = None,
) -> VerifyResult:
    """A simple vectorised program-verify (physics-level reference, see module doc).

    1. RESET, then one compliance-controlled SET aimed a little below the target (gate from
       the transistor model with the nominal ``v_c``): most cells land below the target.
    2. Iterate on the cells whose read (confirmed by the mean of three reads) is outside
       ``band_siemens``:

       * below -> SET pulse at a fixed amplitude with the compliance ceiling a few uS above the
         target; its *width* is chosen per cell by inverting the step law
         ``step = (1 - exp(-kappa w)) gap`` with a per-cell ``kappa`` estimated from the cell's
         previous SET step (secant update); no response -> 3x wider, and the ceiling +2 uS;
       * above -> RESET pulse whose amplitude puts the nominal floor ``F(V)`` just below the
         target, corrected by a per-cell estimate of the floor factor learnt from where the
         previous RESET landed (no response -> the floor is higher: +0.3 in ln).

    Only measured quantities and the profile's nominal (median) parameters are used.
    """
    clock = clock or Clock()
    p = chip.profile
    tr, rs = p.transistor, p.reset
    n = cells.size
    pulses = np.zeros(n, dtype=np.int64)
    energy = np.zeros(n)
    energy += chip.pulse(cells, "reset", RESET_V, RESET_GATE_V, RESET_WIDTH_S, clock.tick())
    aim = np.maximum(targets * 0.88 - 0.5e-6, p.window.g_min * 0.5)
    vg0 = tr.v_gate_for_icc(aim * p.set.v_c)
    energy += chip.pulse(cells, "set", SET_V, vg0, SET_WIDTH_S, clock.tick())
    pulses += 2
    ceil = (targets + 4e-6).astype(float)
    v_set = p.set.v_th + 0.4
    k_set = np.full(n, p.set.rate0 * np.expm1(0.4 / p.set.v0))
    ln_h = np.zeros(n)  # per-cell estimate of ln(floor factor)
    reset_w = 100e-9
    w_min, w_max = 10e-9, 10e-6
    last_w = np.zeros(n)
    last_pol = np.zeros(n)  # +1 set, -1 reset
    last_gap = np.zeros(n)
    last_v = np.zeros(n)
    g_prev = chip.read(cells, clock.tick())
    active = np.ones(n, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        g = g_prev[idx] if it == 1 else chip.read(cells[idx], clock.tick())
        had = last_pol[idx] != 0
        if np.any(had):
            j, gj = idx[had], g[had]
            step = (gj - g_prev[j]) * last_pol[j]
            responded = step > np.maximum(0.15e-6, 1.5 * np.asarray(p.read.sigma(gj)))
            is_set = last_pol[j] > 0
            # SET: secant estimate of kappa, or 3x and a higher ceiling if nothing happened
            frac = np.clip(step / np.maximum(last_gap[j], 1e-9), 0.0, 0.95)
            with np.errstate(divide="ignore", invalid="ignore"):
                k_fit = -np.log1p(-frac) / last_w[j]
            k_new = np.where(responded & (last_w[j] > 0), k_fit, k_set[j] / 3.0)
            k_set[j] = np.where(is_set, k_new, k_set[j])
            ceil[j] += np.where(is_set & ~responded, 2e-6, 0.0)
            # RESET: where it landed tells the cell's floor factor at that amplitude
            ln_f_nom = np.log(rs.g_floor(last_v[j]))
            ln_h_new = np.where(responded, np.log(np.maximum(gj, 1e-9)) - ln_f_nom,
                                ln_h[j] + 0.3)
            ln_h[j] = np.where(is_set, ln_h[j], ln_h_new)
        g_prev[idx] = g
        err = g - targets[idx]
        done = np.abs(err) <= band_siemens
        if np.any(done):
            # confirm with the mean of three reads (read noise is ~0.4 uS at the top)
            j = idx[done]
            g3 = (g[done] + chip.read(cells[j], clock.tick()) + chip.read(cells[j], clock.tick()))
            done[done] = np.abs(g3 / 3.0 - targets[j]) <= band_siemens
        active[idx[done]] = False
        idx, err, g = idx[~done], err[~done], g[~done]
        if idx.size == 0:
            break
        low = err < 0
        now = clock.tick()
        s_idx, r_idx = idx[low], idx[~low]
        if s_idx.size:
            gs = g[low]
            gap = np.maximum(ceil[s_idx] - gs, 0.5e-6)
            want = np.minimum(-err[low] / gap, 0.5)
            w = -np.log1p(-want) / k_set[s_idx]
            same = last_pol[s_idx] > 0
            w = np.where(same, np.minimum(w, 4.0 * last_w[s_idx]), w)
            w = np.clip(w, w_min, w_max)
            vg = tr.v_gate_for_icc(ceil[s_idx] * p.set.v_c)
            energy[s_idx] += chip.pulse(cells[s_idx], "set", v_set, vg, w, now)
            pulses[s_idx] += 1
            last_w[s_idx], last_gap[s_idx], last_pol[s_idx] = w, gap, 1.0
        if r_idx.size:
            # amplitude whose floor (with this cell's factor) sits at the target
            goal = np.log(targets[r_idx]) - ln_h[r_idx]
            v = rs.v_ref - rs.v_slope * (goal - np.log(rs.g_floor_ref))
            v = np.clip(v, rs.v_th + 0.05, 4.0)
            energy[r_idx] += chip.pulse(cells[r_idx], "reset", v, RESET_GATE_V, reset_w, now)
            pulses[r_idx] += 1
            last_v[r_idx], last_pol[r_idx] = v, -1.0
    g_true = chip.truth.programmed(cells)
    g_read = chip.read(cells, clock.tick())
    ok = np.abs(g_true - targets) <= tol_siemens
    return VerifyResult(targets, g_true, g_read, pulses, energy, float(ok.mean()),
                        float(pulses.mean()), it)


@dataclass
class RelaxationResult:
    targets_siemens: np.ndarray        # per level [S]
    times_s: np.ndarray          # read times after programming [s]
    mean_siemens: np.ndarray           # (levels, times) mean read [S]
    sigma_siemens: np.ndarray          # (levels, times) std of reads [S]


def relaxation_experiment(
    chip: ReRAMChip,
    cells: np.ndarray,
    targets: np.ndarray,
    levels: np.ndarray,
    times_s: np.ndarray,
    clock: Clock | None = None,
) -> RelaxationResult:
    """Program ``cells`` with :func:`reference_verify` and read them at ``times_s`` after
    programming at room temperature (the techC protocol: verify, then read at fixed times).
    ``levels`` [int] groups the cells; ``times_s`` must be increasing and include 0 for the
    read right after verify."""
    clock = clock or Clock()
    reference_verify(chip, cells, targets, clock=clock)
    t0 = clock.now_s
    n_lev = int(levels.max()) + 1
    means = np.zeros((n_lev, len(times_s)))
    sig = np.zeros((n_lev, len(times_s)))
    for k, t in enumerate(times_s):
        g = chip.read(cells, max(t0 + t, clock.now_s))
        for lev in range(n_lev):
            sel = levels == lev
            if np.any(sel):
                means[lev, k] = g[sel].mean()
                sig[lev, k] = g[sel].std(ddof=1)
    tg = np.array([targets[levels == lev][0] if np.any(levels == lev) else np.nan
                   for lev in range(n_lev)])
    return RelaxationResult(tg, np.asarray(times_s, float), means, sig)


#: techC time points [s] (shared/reference-data/rram-relaxation-techC/settings.json)
TECHC_TIMES_S = (0.0, 0.01, 0.1, 1.0, 4.0, 1e5)


def compare_relaxation_with_techc(
    chip: ReRAMChip, techc_tsv: str, n_per_range: int = 500, ranges: tuple[int, ...] = ()
) -> list[dict]:
    """Program the chip to the techC ranges inside its window with :func:`reference_verify`,
    read at the techC time points, and return per range and time the emulated and measured
    spread and mean shift (``relaxdata.min.tsv.gz``: addr, time, r, g, gi, range, timept)."""
    import pandas as pd

    d = pd.read_csv(techc_tsv, sep="\t", header=None,
                    names=["addr", "time", "r", "g", "gi", "range", "timept"])
    d = d[d["range"] < 32]
    stats = d.groupby(["range", "timept"])["g"].agg(["mean", "std"])
    g0 = stats.xs(0.0, level="timept")["mean"]
    w = chip.profile.window
    ranges = ranges or tuple(int(r) for r in g0.index if w.g_min <= g0[r] <= w.g_max)
    ok = np.flatnonzero(chip.truth.stuck_mask() == 0)[: len(ranges) * n_per_range]
    lev = np.arange(ok.size) // n_per_range
    targets = g0.loc[list(ranges)].to_numpy()[lev]
    times = np.array(TECHC_TIMES_S)
    res = relaxation_experiment(chip, ok, targets, lev, times)
    rows = []
    for i, rg in enumerate(ranges):
        for k, t in enumerate(times):
            rows.append(
                {
                    "range": rg,
                    "target_siemens": res.targets_siemens[i],
                    "time_s": t,
                    "sigma_emulated_siemens": res.sigma_siemens[i, k],
                    "sigma_techc_siemens": float(stats.loc[(rg, t), "std"]),
                    "shift_emulated_siemens": res.mean_siemens[i, k] - res.mean_siemens[i, 0],
                    "shift_techc_siemens": float(
                        stats.loc[(rg, t), "mean"] - stats.loc[(rg, 0.0), "mean"]
                    ),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the default profile's calibration figures (docs/physics.md quotes them)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--techc", default=None, help="path to techC relaxdata.min.tsv.gz")
    a = ap.parse_args(argv)
    from dataclasses import replace

    from cimlab.physics.profile import Geometry, load_profile

    prof = load_profile(a.profile)
    prof = replace(prof, geometry=Geometry(8, prof.geometry.rows, prof.geometry.cols))
    chip = ReRAMChip(prof, seed=a.seed)
    clock = Clock()
    ss = single_shot_experiment(chip, clock=clock)
    print(f"single shot: sigma/range = {ss.sigma_over_range:.4f} "
          f"(pooled {ss.sigma_pooled_siemens * 1e6:.2f} uS)")
    for t, s, m in zip(ss.targets_siemens, ss.sigma_siemens, ss.mean_error_siemens, strict=True):
        print(f"  target {t * 1e6:5.1f} uS: sigma {s * 1e6:4.2f} uS, mean error {m * 1e6:+.2f} uS")
    ok = np.flatnonzero(chip.truth.stuck_mask() == 0)
    cells = ok[(ok >= 2 * chip.tile_size) & (ok < 4 * chip.tile_size)]
    targets = np.random.default_rng(a.seed).uniform(prof.window.g_min, prof.window.g_max,
                                                    cells.size)
    v = reference_verify(chip, cells, targets, clock=clock)
    fresh = float(np.mean(np.abs(v.g_read_siemens - targets) <= 1e-6))
    print(f"reference verify (+-1 uS, {cells.size} cells): success {v.success_rate:.4%} "
          f"(fresh read in band {fresh:.2%}), {v.mean_pulses:.2f} pulses/cell, "
          f"final sigma {np.std(v.g_true_siemens - targets) * 1e6:.2f} uS, "
          f"energy {v.energy_j.mean() * 1e12:.0f} pJ/cell")
    print("binary conditions (paper 003 Table I):")
    for r in chip.truth.binary_table():
        print(f"  {r['condition']:11s} Vg {r['v_gate']:.2f} V  R_LRS {r['r_lrs_median_ohm']:8.0f}"
              f"  R_HRS {r['r_hrs_median_ohm']:8.0f} ohm  BER 1T1R {r['ber_1t1r']:.2e} "
              f"(paper {r['ber_paper']:.1e})  2T2R {r['ber_2t2r']:.2e}  E set/reset "
              f"{r['energy_set_j'] * 1e12:.1f}/{r['energy_reset_j'] * 1e12:.1f} pJ  "
              f"endurance {r['endurance_median']:.3g}")
    if a.techc:
        rows = compare_relaxation_with_techc(ReRAMChip(prof, seed=a.seed + 1), a.techc)
        import pandas as pd

        df = pd.DataFrame(rows)
        mid = df[(df["range"] >= 8) & (df["range"] <= 24)]
        tab = (
            mid.groupby("time_s")[
                [
                    "sigma_emulated_siemens",
                    "sigma_techc_siemens",
                    "shift_emulated_siemens",
                    "shift_techc_siemens",
                ]
            ].mean()
            * 1e6
        )
        print("relaxation vs techC, mid ranges 8-24 (uS):")
        print(tab.round(2).to_string())


if __name__ == "__main__":
    main()
