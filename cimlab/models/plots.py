"""Fitted-vs-measured plots of a device model (PNG, matplotlib Agg backend).

The measured points are regrouped from the store exactly as the fitters group them; the curves
are the model in the JSON file (not a refit), so a stale model shows as a mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlab.models.device_model import DeviceModel
from cimlab.models.fit._stats import group_moments
from cimlab.models.fit.read_noise import read_pairs
from cimlab.models.fit.retention import bake_groups
from cimlab.models.fit.store import _relevel, collect
from cimlab.procedures.report.plots import save_figure, time_label
from cimlab.units import KELVIN_OFFSET

_U = 1e-6


def _fig(nrows: int = 1, ncols: int = 2, size=(11, 4.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(nrows, ncols, figsize=size, squeeze=False)


def _save(plt, fig, path: Path) -> Path:
    """Lay out, write (:func:`~cimlab.procedures.report.plots.save_figure`: PNG, or the
    command's --format/--dpi) and close ``fig``; returns the path written."""
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_model(dm: DeviceModel, store_path: str | Path, out: str | Path) -> list[Path]:
    """Write the PNGs for every effect the store has data for; returns the files."""
    from cimlab.store import Store

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with Store.open(store_path, mode="r") as s:
        ts = collect(s, include_unfinished=True)
    files: list[Path] = []
    frames = [(k, ts.get(k, "programmed")) for k in ("programming_error", "read_fluctuation",
                                                       "relaxation")]
    frames = [f.assign(run_kind=k) for k, f in frames if f is not None]
    if frames:
        files.append(_plot_programming(dm, _relevel(pd.concat(frames, ignore_index=True)), out))
    rf = ts.get("read_fluctuation", "reads")
    if rf is not None:
        files.append(_plot_read(dm, _relevel(rf), out))
    rel = [f for f in (ts.get("relaxation", "reads"), ts.get("imported", "reads")) if
           f is not None]
    if rel:
        files.append(_plot_relaxation(dm, _relevel(pd.concat(rel, ignore_index=True)), out))
    bake = ts.get("bake_retention", "reads")
    if bake is not None:
        files.append(_plot_bake(dm, _relevel(bake), ts.get("bake_retention", "programmed"),
                                ts.get("bake_retention", "bakes"), out))
    bits = ts.get("ber", "bits")
    if bits is not None:
        files.append(_plot_binary(dm, bits, out))
    return files


def _plot_programming(dm: DeviceModel, df: pd.DataFrame, out: Path) -> Path:
    plt, fig, ax = _fig()
    df = df.assign(err=df["g_siemens"] - df["target_siemens"])
    if "run_kind" not in df.columns:
        df = df.assign(run_kind="")
    # one series per (run kind, mode), labelled as such: runs of the same mode (programming
    # error, read fluctuation, relaxation) have their own levels and are not one curve; the
    # model of a mode is drawn once, in the colour of that mode's first series
    colours: dict[str, str] = {}
    for (kind, mode), sub in df.groupby([df["run_kind"].astype(str), df["mode"].astype(str)]):
        mom = group_moments(sub, ["level"], "err", extra_means=["target_siemens"])
        g = mom["target_siemens"].to_numpy()
        tag = f"{mode} ({kind})" if kind else mode
        (pts,) = ax[0, 0].plot(g / _U, np.sqrt(mom["var"]) / _U, "o",
                               label=f"{tag}: measured")
        ax[0, 1].hist(sub["err"] / _U, bins=100, histtype="step", density=True, label=tag,
                      color=pts.get_color())
        if mode in colours:
            continue
        colours[mode] = pts.get_color()
        try:
            pe = dm.programming_for(mode)
        except KeyError:
            continue
        gm = df.loc[df["mode"].astype(str) == mode, "target_siemens"].to_numpy(dtype=float)
        gg = np.linspace(np.nanmin(gm), np.nanmax(gm), 200)
        ax[0, 0].plot(gg / _U, np.asarray(pe.sigma(gg)) / _U, "-", color=colours[mode],
                      label=f"{mode}: model ({pe.form})")
    ax[0, 0].set(xlabel="target [µS]", ylabel="σ of g − target [µS]", title="programming error")
    ax[0, 1].set(xlabel="g − target [µS]", ylabel="probability density [1/µS]",
                 title="error distribution")
    for a in ax[0]:
        a.legend(fontsize=8)
    return _save(plt, fig, out / "programming.png")


def _plot_read(dm: DeviceModel, reads: pd.DataFrame, out: Path) -> Path:
    plt, fig, ax = _fig()
    pairs = read_pairs(reads)
    mom = group_moments(pairs, ["level"], "d", extra_means=["g"])
    g = mom["g"].to_numpy()
    s = np.sqrt(mom["var"].to_numpy() / 2)
    gg = np.linspace(max(g.min(), 1e-9), g.max(), 200)
    ax[0, 0].plot(g / _U, s / _U, "o", label="measured (read pairs)")
    ax[0, 0].plot(gg / _U, np.asarray(dm.read_noise.sigma(gg)) / _U, "-",
                  label=f"model ({dm.read_noise.form})")
    ax[0, 1].plot(g / _U, s / g, "o", label="measured")
    ax[0, 1].plot(gg / _U, np.asarray(dm.read_noise.sigma(gg)) / gg, "-", label="model")
    ax[0, 0].set(xlabel="g [µS]", ylabel="read σ [µS]", title="read noise")
    ax[0, 1].set(xlabel="g [µS]", ylabel="read σ / g (dimensionless)", title="relative read noise")
    for a in ax[0]:
        a.legend(fontsize=8)
    return _save(plt, fig, out / "read_noise.png")


def _plot_relaxation(dm: DeviceModel, reads: pd.DataFrame, out: Path) -> Path:
    from cimlab.models.fit.relaxation import _group

    plt, fig, ax = _fig()
    _, mom = _group(reads, dm.retention, dm.relaxation.g_ref)
    levels = np.unique(mom["level"])
    pick = levels[np.linspace(0, levels.size - 1, min(6, levels.size)).round().astype(int)]
    cmap = plt.get_cmap("viridis")
    r = dm.relaxation
    for i, lv in enumerate(pick):
        m = mom[mom["level"] == lv]
        c = cmap(i / max(len(pick) - 1, 1))
        g = float(m["g0_siemens"].mean())
        t = m["t_eq_s"].to_numpy()
        tt = np.logspace(np.log10(t.min()) - 0.5, np.log10(t.max()) + 0.5, 100)
        ax[0, 0].plot(t, np.sqrt(m["var"]) / _U, "o", color=c, label=f"{g / _U:.1f} µS")
        ax[0, 0].plot(tt, np.asarray(r.sigma(g, tt)) / _U, "-", color=c)
        ax[0, 1].plot(t, m["mean"] / _U, "o", color=c)
        ax[0, 1].plot(tt, np.asarray(r.mean_shift(g, tt)) / _U, "-", color=c)
    for a in ax[0]:
        a.set_xscale("log")
    ax[0, 0].set(xlabel="time after programming [s]", ylabel="σ of g − g₀ [µS]",
                 title=f"relaxation spread ({r.form})")
    ax[0, 1].set(xlabel="time after programming [s]", ylabel="mean of g − g₀ [µS]",
                 title=f"relaxation drift ({r.mean_form})")
    ax[0, 0].legend(fontsize=7)
    return _save(plt, fig, out / "relaxation.png")


def bake_model(dm: DeviceModel, cum: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's mean [S] and variance [S^2] of each bake group's change since its
    reference read, as the retention fit models them: relaxation law of ``dm`` in equivalent
    room-temperature time ``t_off + AF(T) soak (+ ramps)``; with the step-0 read as the
    reference (no verify read) the change counts from ``t_off`` on; the read variance of the
    two reads only where the fit used a read-noise model. With one bake temperature the
    equivalent time is the fitted one (``gof.ln_af_bake``), not the prior Ea's."""
    from cimlab.models.effects import K_B_EV
    from cimlab.models.fit.retention import _t_eq

    ret, rel = dm.retention, dm.relaxation
    gof = ret.fit.gof if ret.fit is not None else {}
    notes = ret.fit.notes if ret.fit is not None else ""
    t_off = float(gof.get("t_off_s", 0.0))
    ea = ret.ea_ev
    if "ln_af_bake" in gof and gof.get("bake_temp_k"):
        x_b = (1.0 / ret.t_ref_k - 1.0 / float(gof["bake_temp_k"])) / K_B_EV
        ea = float(gof["ln_af_bake"]) / x_b if x_b else ea
    amb = cum["ambient_k"].to_numpy(dtype=float)
    amb = np.where(np.isfinite(amb), amb, ret.t_ref_k)
    teq = _t_eq(ea, t_off, cum["soak_cum_s"].to_numpy(dtype=float),
                cum["ramp_cum_s"].to_numpy(dtype=float),
                cum["bake_temp_k"].to_numpy(dtype=float), amb, ret.t_ref_k)
    g = cum["g0"].to_numpy(dtype=float)
    var = np.asarray(rel.variance(g, teq), dtype=float)
    mean = np.asarray(rel.mean_shift(g, teq), dtype=float)
    verify_ref = len(cum) > 0 and str(cum["reference"].iloc[0]) == "verify"
    if not verify_ref:
        var = var - np.asarray(rel.variance(g, np.full_like(g, t_off)), dtype=float)
        mean = mean - np.asarray(rel.mean_shift(g, np.full_like(g, t_off)), dtype=float)
    if "no read-noise model" not in notes:
        reps = cum["reps"].to_numpy(dtype=float)
        var = var + np.asarray(dm.read_noise.sigma(g)) ** 2 * (
            (1.0 if verify_ref else 1.0 / reps) + 1.0 / reps)
    return mean, np.maximum(var, 0.0)


def _plot_bake(dm: DeviceModel, reads: pd.DataFrame, programmed: pd.DataFrame | None,
               bakes: pd.DataFrame | None, out: Path) -> Path:
    """Bake retention, model vs data over every group the fit saw (temperature, cycle, level,
    step): top, the spread and mean of the change vs level at each bake's last step; bottom,
    measured vs model for all groups (the misfit, whatever the shape of the schedule)."""
    plt, fig, ax = _fig(2, 2, size=(11, 8.4))
    _, cum = bake_groups(reads, dm.relaxation.g_ref, programmed, bakes)
    ret = dm.retention
    mean_m, var_m = bake_model(dm, cum)
    cum = cum.assign(mean_model=mean_m, sigma_model=np.sqrt(var_m),
                     sigma=np.sqrt(cum["var"].to_numpy(dtype=float)))
    t_fail = float(getattr(ret, "t_fail_k", 0.0) or 0.0)
    temps = np.unique(np.round(cum["bake_temp_k"].to_numpy(dtype=float), 1))
    cmap = plt.get_cmap("plasma")
    colour = {t: cmap(0.85 * i / max(len(temps) - 1, 1)) for i, t in enumerate(temps)}
    markers = "os^vD<>ph*"
    seen: dict[float, int] = {}
    for _ti, m in cum.groupby("temp_index", sort=True):
        tk = float(np.round(m["bake_temp_k"].max(), 1))
        k = seen.get(tk, 0)
        seen[tk] = k + 1
        excluded = t_fail > 0 and tk >= t_fail - 1e-3
        c, mk = colour[tk], markers[k % len(markers)]
        face = "none" if excluded else c
        last = m[m["step"] == m["step"].max()].sort_values("g0")
        label = (f"{tk - KELVIN_OFFSET:.0f} °C" + (f" (bake {k + 1})" if k else "")
                 + f", {time_label(float(last['soak_cum_s'].max()))}"
                 + (" (excluded from the fit)" if excluded else ""))
        g = last["g0"].to_numpy() / _U
        ax[0, 0].plot(g, last["sigma"] / _U, mk, color=c, mfc=face, label=label)
        ax[0, 0].plot(g, last["sigma_model"] / _U, "-", color=c)
        ax[0, 1].plot(g, last["mean"] / _U, mk, color=c, mfc=face)
        ax[0, 1].plot(g, last["mean_model"] / _U, "-", color=c)
        ax[1, 0].plot(m["sigma_model"] / _U, m["sigma"] / _U, mk, color=c, mfc=face, ms=4,
                      alpha=0.8)
        ax[1, 1].plot(m["mean_model"] / _U, m["mean"] / _U, mk, color=c, mfc=face, ms=4,
                      alpha=0.8)
    from matplotlib.lines import Line2D

    handles, _ = ax[0, 0].get_legend_handles_labels()
    handles += [Line2D([], [], color="k", marker="o", ls="none", label="measured"),
                Line2D([], [], color="k", ls="-", label=f"model ({Path(dm.name).name})")]
    ax[0, 0].legend(handles=handles, fontsize=7)
    ax[0, 0].set(xlabel="conductance after programming g₀ [µS]",
                 ylabel="σ of the change g − g_ref [µS]",
                 title="spread at each bake's last step")
    ax[0, 1].set(xlabel="conductance after programming g₀ [µS]",
                 ylabel="mean change g − g_ref [µS]", title="drift at each bake's last step")
    sig, sig_m = cum["sigma"].to_numpy() / _U, cum["sigma_model"].to_numpy() / _U
    ok = (sig > 0) & np.isfinite(sig_m)
    rel_err = np.median(np.abs(sig_m[ok] / sig[ok] - 1.0)) if ok.any() else float("nan")
    for a, (x, y) in ((ax[1, 0], (sig_m, sig)),
                      (ax[1, 1], (cum["mean_model"].to_numpy() / _U,
                                  cum["mean"].to_numpy() / _U))):
        both = np.r_[x, y]
        both = both[np.isfinite(both)]
        if both.size:
            lo, hi = float(both.min()), float(both.max())
            a.plot([lo, hi], [lo, hi], "k--", lw=1, label="model = measured")
        a.legend(fontsize=7, loc="upper left")
    ax[1, 0].set(xlabel="model σ of the change [µS]", ylabel="measured σ of the change [µS]",
                 title=f"all {len(cum)} groups: median |σ model / σ measured − 1| = "
                 f"{rel_err:.2g}")
    ax[1, 1].set(xlabel="model mean change [µS]", ylabel="measured mean change [µS]",
                 title="all groups: mean change")
    fit = ret.fit
    chi2 = fit.gof.get("chi2_red") if fit is not None else None
    fig.suptitle(f"bake retention, Ea = {ret.ea_ev:.2f} eV"
                 + (f"; fit χ²/dof = {chi2:.3g} (weighted, on the variances of the changes "
                    "between consecutive bake steps)" if chi2 is not None else ""), fontsize=9)
    return _save(plt, fig, out / "retention.png")


def _plot_binary(dm: DeviceModel, bits: pd.DataFrame, out: Path) -> Path:
    from cimlab.models.fit.binary import _states

    conds = [c for c in dm.binary.conditions]
    plt, fig, ax = _fig(1, max(len(conds), 1), size=(4.5 * max(len(conds), 1), 3.8))
    for i, c in enumerate(conds):
        b = bits[bits["condition"].astype(str) == c.name]
        a = ax[0, i]
        if not b.empty:
            lnl, _, lnh, _ = _states(b)
            a.hist(lnl, bins=60, density=True, histtype="step", label="LRS: measured")
            a.hist(lnh, bins=60, density=True, histtype="step", label="HRS: measured")
        x = np.linspace(np.log(c.hrs_median_siemens) - 4 * c.hrs_sigma_ln,
                        np.log(c.lrs_median_siemens) + 4 * c.lrs_sigma_ln, 300)
        for state, med, sd in (("LRS", c.lrs_median_siemens, c.lrs_sigma_ln),
                               ("HRS", c.hrs_median_siemens, c.hrs_sigma_ln)):
            a.plot(x, np.exp(-0.5 * ((x - np.log(med)) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)),
                   "-", label=f"{state}: model (lognormal)")
        a.axvline(np.log(c.threshold_siemens), color="k", ls=":", label="read threshold")
        a.set(xlabel="ln(g / 1 S)", ylabel="probability density (per unit of ln g)",
              title=f"{c.name}: model BER {c.ber_1t1r:.2g} (1T1R)")
        a.legend(fontsize=7)
    return _save(plt, fig, out / "binary.png")


__all__: list[Any] = ["plot_model"]
