"""PNG plots of the report, one recipe per run kind (matplotlib, Agg canvas, no pyplot
state). Each ``plot_*`` function takes a summary of :mod:`cimlab.procedures.report.summaries`
and returns the paths it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlab.procedures.cell_states import CellFilter, analog_filter
from cimlab.procedures.report.sections import US_PER_S
from cimlab.procedures.report.summaries import mid_levels
from cimlab.stats import CONFIDENCE
from cimlab.units import KELVIN_OFFSET

#: Default array geometry (rows, cols) for fault maps when the run does not record one.
DEFAULT_TILE = (256, 64)
_US = US_PER_S


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


#: Resolution of raster figures when nothing else is asked [dots per inch].
DEFAULT_DPI = 200
#: File formats :func:`save_figure` writes (matplotlib backends, no display).
FIGURE_FORMATS = ("png", "pdf", "svg")


def save_figure(fig: Any, path: str | Path, dpi: float = DEFAULT_DPI) -> Path:
    """Write ``fig`` to ``path`` and return the path written: cimlab's one figure writer.

    The format and resolution follow matplotlib's ``savefig.format`` and ``savefig.dpi``
    settings when set (``cimlab ... --format pdf --dpi 300`` sets them for the command,
    :func:`cimlab.cli._common.figure_options`): the suffix of ``path`` becomes the format's
    (``x.png`` -> ``x.pdf``), and a numeric ``savefig.dpi`` replaces ``dpi``. PDF and SVG are
    vector files (``dpi`` only matters for images inside them)."""
    from matplotlib import rcParams

    path = Path(path)
    fmt = str(rcParams["savefig.format"]).lower()
    if fmt in FIGURE_FORMATS and path.suffix.lower() != "." + fmt:
        path = path.with_suffix("." + fmt)
    chosen = rcParams["savefig.dpi"]
    fig.savefig(path, dpi=chosen if isinstance(chosen, (int, float)) else dpi)
    return path


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path)


#: What a plotted sigma is, per :class:`CellFilter` basis.
_BASIS_LABEL = {"fault_map": "stuck cells excluded", "robust": "robust, 1.4826 MAD",
                "plain": "std"}


#: Programming-error histograms span this many (stuck-free or robust) sigmas either side.
HIST_SIGMAS = 5.0


def plot_programming_error(df, secs, out: Path, stem: str, flt: CellFilter | None = None
                            ) -> list[Path]:
    flt = flt or analog_filter(df["cell"], None)
    basis = flt.basis
    d = df.assign(error_siemens=df["g_siemens"] - df["target_siemens"])
    d = d[flt.keep(d["cell"])]
    width = secs[1].frame.groupby("level")["sigma_siemens"].max() * HIST_SIGMAS * _US
    levels = np.unique(d["level"])
    show = levels if levels.size <= 16 else levels[np.linspace(0, levels.size - 1, 16).astype(int)]
    ncols = min(4, show.size)
    nrows = int(np.ceil(show.size / ncols))
    fig, axes = _figure(nrows, ncols, (3.0 * ncols, 2.3 * nrows))
    for ax, lv in zip(axes.flat, show, strict=False):
        sub = d[d["level"] == lv]
        lim = float(width.get(lv, np.nan))
        if not np.isfinite(lim) or lim <= 0:
            lim = float(np.percentile(np.abs(sub["error_siemens"]), 99.5) * _US) or 1.0
        bins = np.linspace(-lim, lim, 41)
        for mode, g in sub.groupby("mode"):
            ax.hist(g["error_siemens"] * _US, bins=bins, histtype="step", label=str(mode))
        beyond = int((np.abs(sub["error_siemens"] * _US) > lim).sum())
        ax.set_title(f"level {lv}" + (f" ({beyond} beyond ±{lim:.2g} µS)" if beyond else ""),
                     fontsize=9)
        ax.set_xlabel("g − target [µS]", fontsize=8)
        ax.set_ylabel("cells (count)", fontsize=8)
    for ax in list(axes.flat)[show.size:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    if flt.stuck.size:
        fig.suptitle(f"{flt.stuck.size} stuck cells (fault map) left out", fontsize=9)
    paths = [_save(fig, out / f"{stem}_histograms.png")]
    s = secs[1].frame
    fig, axes = _figure()
    ax = axes[0, 0]
    for mode, g in s.groupby("mode"):
        ax.errorbar(g["target_siemens"] * _US, g["sigma_siemens"] * _US,
                    yerr=[(g["sigma_siemens"] - g["sigma_lo_siemens"]) * _US,
                          (g["sigma_hi_siemens"] - g["sigma_siemens"]) * _US], marker="o", ms=3,
                    label=str(mode), capsize=2)
    ax.set_xlabel("target conductance [µS]")
    ax.set_ylabel("σ of g − target [µS]")
    ax.set_title(f"programming error per level (σ: {_BASIS_LABEL[basis]})", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(title=f"{CONFIDENCE:.0%} interval", fontsize=8, title_fontsize=8)
    paths.append(_save(fig, out / f"{stem}_sigma_vs_level.png"))
    return paths


def plot_read_fluctuation(secs, out: Path, stem: str, basis: str = "plain") -> list[Path]:
    fig, axes = _figure(1, 2, (10, 4))
    for sec in secs:
        s = sec.frame
        g = (s["sigma_siemens"] / s["rel_sigma"]).to_numpy()  # the level's centre (mean or median)
        order = np.argsort(g)
        smu = "SMU" in sec.title
        style = "s" if smu else "o-"
        label = "SMU" if smu else "array"
        axes[0, 0].plot(g[order] * _US, s["sigma_siemens"].to_numpy()[order] * _US, style, ms=4,
                        label=label)
        axes[0, 1].plot(g[order] * _US, s["rel_sigma"].to_numpy()[order] * 100, style, ms=4,
                        label=label)
    what = {"fault_map": "stuck cells excluded", "robust": "robust: median cell",
            "plain": "all cells"}[basis]
    fig.suptitle(f"read-to-read sigma per level ({what})", fontsize=10)
    axes[0, 0].set_ylabel("read σ [µS]")
    axes[0, 1].set_ylabel("read σ / conductance [%]")
    centre = "median" if basis == "robust" else "mean"
    for ax in axes.flat:
        ax.set_xlabel(f"{centre} conductance of the level [µS]")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend()
    return [_save(fig, out / f"{stem}_read_sigma.png")]


def time_label(t: float) -> str:
    """A time with 2 significant digits: "0.019 s", "1 s", "1e+04 s"."""
    return f"{float(f'{t:.2g}'):g} s"


def _log_time_axis(ax, times: np.ndarray) -> float:
    """Log time axis; where ``times`` has t = 0, that point is drawn one decade below the
    decade of the first non-zero time, with the tick "0" and a dotted line setting it apart.
    Returns the x to draw t = 0 at."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    t = np.asarray(times, float)
    pos = t[t > 0]
    lo = np.floor(np.log10(pos.min())) if pos.size else -3.0
    hi = np.ceil(np.log10(pos.max()) - 0.02) if pos.size else lo + 1
    x0 = 10.0 ** (lo - 1)
    zero = bool((t == 0).any())
    ax.set_xscale("log")
    ax.set_xlim((x0 if zero else 10.0**lo) / 10**0.3, 10**hi * 10**0.15)
    step = max(1, int(np.ceil((hi - lo + 1) / 8)))  # at most ~8 decade labels
    ticks = list(10.0 ** np.arange(lo, hi + 1, step))
    ax.xaxis.set_major_locator(FixedLocator([x0, *ticks] if zero else ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: "0" if zero and np.isclose(x, x0) else f"$10^{{{round(np.log10(x))}}}$"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if zero:
        ax.axvline(x0 * 10**0.5, color="0.6", lw=0.8, ls=":")
    return x0


def _level_colours(levels: np.ndarray):
    """Colormap normalised over the level indices, and the mappable for a colorbar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(float(levels.min()), float(max(levels.max(), levels.min() + 1)))
    sm = ScalarMappable(norm=norm, cmap=colormaps["viridis"])
    return (lambda lv: sm.to_rgba(float(lv))), sm


def plot_relaxation(stats: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    from matplotlib import colormaps

    times = np.unique(stats["time_s"])
    levels = np.unique(stats["level"])
    colour, sm = _level_colours(levels)
    fig, axes = _figure(1, 2, (11.5, 4.4))
    ax = axes[0, 0]
    x0 = _log_time_axis(ax, times)
    for lv in levels:
        g = stats[stats["level"] == lv].sort_values("time_s")
        t = np.where(g["time_s"] > 0, g["time_s"], x0)
        ax.plot(t, g["sigma_siemens"] * _US, "-", color=colour(lv), lw=0.8)
    mid = stats[stats["level"].isin(mid_levels(levels))].groupby("time_s")["sigma_siemens"].mean()
    t = np.where(mid.index > 0, mid.index, x0)
    ax.plot(t, mid.to_numpy() * _US, "k-o", lw=2, label="mid-range levels (mean)")
    ax.set_xlabel("time since programming [s]")
    ax.set_ylabel("σ of g within a level [µS]")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.colorbar(sm, ax=ax, label="level")
    ax = axes[0, 1]
    tmap = colormaps["plasma"]
    for i, t in enumerate(times):
        g = stats[stats["time_s"] == t].sort_values("level")
        ax.plot(g["target_siemens"] * _US, g["mean_shift_siemens"] * _US, "o-", ms=2,
                color=tmap(0.85 * i / max(times.size - 1, 1)), label=time_label(t))
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("target conductance [µS]")
    ax.set_ylabel("mean shift g − g₀ [µS]")
    ax.legend(fontsize=7, title="time", title_fontsize=7)
    return [_save(fig, out / f"{stem}_sigma_vs_time.png")]


def plot_bake(stats: pd.DataFrame, out: Path, stem: str, basis: str = "plain") -> list[Path]:
    temps = np.unique(stats["temp_k"])
    levels = np.unique(stats["level"])
    colour, sm = _level_colours(levels)
    fig, axes = _figure(1, temps.size, (5.5 * temps.size + 1.0, 4.4))
    for ax, tk in zip(axes.flat, temps, strict=True):
        sub = stats[stats["temp_k"] == tk]
        x0 = _log_time_axis(ax, sub["bake_time_s"].to_numpy())
        for lv, g in sub.groupby("level"):
            g = g.sort_values("bake_time_s")
            t = g["bake_time_s"].to_numpy()
            x = np.where(t > 0, t, x0)
            y = g["mean_g_siemens"].to_numpy() * _US
            e = g["sigma_siemens"].to_numpy() * _US
            c = colour(lv)
            ax.plot(x[t > 0], y[t > 0], "o-", ms=3, color=c, lw=1)
            ax.plot(x[t == 0], y[t == 0], "o", ms=4, mfc="none", color=c)
            ax.fill_between(x, y - e, y + e, color=c, alpha=0.12, lw=0)
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        ax.legend(handles=[Line2D([], [], color="0.3", marker="o", ms=3, label="mean g"),
                           Line2D([], [], color="0.3", marker="o", ms=4, mfc="none", ls="none",
                                  label="before the bake"),
                           Patch(color="0.3", alpha=0.25, label="± σ band")], fontsize=7)
        ax.set_xlabel("cumulative bake time [s] (open: before the bake)")
        ax.set_ylabel("mean g ± σ [µS]")
        ax.set_title(f"{tk - KELVIN_OFFSET:.0f} °C (σ: {_BASIS_LABEL[basis]})", fontsize=10)
    fig.colorbar(sm, ax=axes[0, -1], label="level")
    return [_save(fig, out / f"{stem}_retention.png")]


def plot_bake_temperatures(by_step: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Mean shift and sigma (levels pooled) vs bake time, one line per temperature (and run,
    for a store-level table with a ``run`` column); the reads before the bake at tick "0"."""
    from matplotlib import colormaps

    temps = np.unique(by_step["temp_c"])
    tmap = colormaps["plasma"]
    span = max(float(temps.max() - temps.min()), 1.0)
    keys = ["temp_c", "run"] if "run" in by_step.columns else ["temp_c"]
    if "temp_index" in by_step.columns:
        keys.append("temp_index")
    fig, axes = _figure(1, 2, (11.5, 4.4))
    x0 = _log_time_axis(axes[0, 0], by_step["bake_time_s"].to_numpy())
    _log_time_axis(axes[0, 1], by_step["bake_time_s"].to_numpy())
    labelled: set[float] = set()
    for key, g in by_step.groupby(keys, sort=True):
        tc = float(key[0])
        g = g.sort_values("bake_time_s")
        t = g["bake_time_s"].to_numpy()
        x = np.where(t > 0, t, x0)
        c = tmap(0.85 * (tc - float(temps.min())) / span)
        label = None if tc in labelled else f"{tc:g} °C"
        labelled.add(tc)
        axes[0, 0].plot(x, g["mean_shift_siemens"] * _US, "o-", ms=3, color=c, label=label)
        axes[0, 1].plot(x, g["sigma_siemens"] * _US, "o-", ms=3, color=c, label=label)
    axes[0, 0].axhline(0, color="grey", lw=0.5)
    axes[0, 0].set_ylabel("mean shift g − g₀ [µS] (levels averaged)")
    axes[0, 1].set_ylabel("σ of g [µS] (levels RMS)")
    axes[0, 1].set_ylim(bottom=0)
    for ax in axes.flat:
        ax.set_xlabel("cumulative bake time [s]")
        ax.legend(fontsize=8, title="bake temperature", title_fontsize=8)
    return [_save(fig, out / f"{stem}_temperatures.png")]


def plot_ber(s: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    fig, axes = _figure()
    ax = axes[0, 0]
    conds = list(dict.fromkeys(s["condition"]))
    x_of = {c: i for i, c in enumerate(conds)}
    structures = list(dict.fromkeys(s["structure"]))
    series = [("", "errors", "o")]
    if "ber_working" in s.columns:
        series.append(("_working", "errors_working", "s"))
    n_series = len(structures) * len(series)
    for j, (st, g) in enumerate(s.groupby("structure", sort=False)):
        for m, (suffix, errs, marker) in enumerate(series):
            pos = j * len(series) + m
            x = np.array([x_of[c] for c in g["condition"]]) + (pos - (n_series - 1) / 2) * 0.1
            has = g[errs].to_numpy() > 0
            ber = g[f"ber{suffix}"].to_numpy()
            lo, hi = g[f"ber{suffix}_lo"].to_numpy(), g[f"ber{suffix}_hi"].to_numpy()
            label = f"{st}, " + ("working cells" if suffix else "all cells (raw)")
            line = ax.errorbar(x[has], ber[has], yerr=[ber[has] - lo[has], hi[has] - ber[has]],
                               fmt=marker, capsize=3, label=label,
                               mfc="none" if suffix else None)
            if (~has).any():
                ax.plot(x[~has], hi[~has], "v", color=line[0].get_color(),
                        label=f"{label}: no errors (upper bound)")
    ticks = list(conds)
    if "energy_per_bit_j" in s.columns:
        energy = s.drop_duplicates("condition").set_index("condition")["energy_per_bit_j"]
        ticks = [f"{c}\n{energy[c] * 1e12:.3g} pJ/bit" for c in conds]
    ax.set_xticks(range(len(conds)), ticks, fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("programming condition (energy per bit)" if "energy_per_bit_j" in s.columns
                  else "programming condition")
    ax.set_ylabel(f"bit error rate (dimensionless, {CONFIDENCE:.0%} CI)")
    ax.legend(fontsize=7)
    return [_save(fig, out / f"{stem}_ber.png")]


def find_geometry(*docs: Any) -> tuple[int, int]:
    def walk(x):
        if isinstance(x, dict):
            r, c = x.get("rows"), x.get("cols")
            if isinstance(r, int) and isinstance(c, int) and r > 0 and c > 0:
                return r, c
            geo = x.get("geometry")
            if isinstance(geo, (list, tuple)) and len(geo) == 3 and all(
                    isinstance(v, int) and v > 0 for v in geo):
                return int(geo[1]), int(geo[2])
            for v in x.values():
                found = walk(v)
                if found:
                    return found
        return None

    for doc in docs:
        found = walk(doc)
        if found:
            return found
    return DEFAULT_TILE


#: Fault-map colours per state code (0: not measured, 1 ok, 2 stuck-on, 3 stuck-off, 4 other).
_FAULT_COLOURS = ("#ffffff", "#d9d9d9", "#d62728", "#1f4fd6", "#ff9900")
_FAULT_NAMES = ("not measured", "ok", "stuck-on", "stuck-off", "other state")


def plot_faults(df: pd.DataFrame, geometry: tuple[int, int], out: Path, stem: str) -> list[Path]:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, cols = geometry
    cell = df["cell"].to_numpy(np.int64)
    tile = cell // (rows * cols)
    tiles = np.unique(tile)[:4]
    code = df["state"].map({"ok": 1, "stuck_on": 2, "stuck_off": 3}).fillna(4).to_numpy(int)
    fig, axes = _figure(1, tiles.size, (max(2.8 * tiles.size + 0.6, 4.4), 6.6))
    cmap = ListedColormap(list(_FAULT_COLOURS))
    present: set[int] = set()
    for ax, t in zip(axes.flat, tiles, strict=True):
        img = np.zeros((rows, cols), int)  # 0: not measured
        sel = tile == t
        local = cell[sel] - t * rows * cols
        img[local // cols, local % cols] = code[sel]
        present |= set(np.unique(img).tolist())
        ax.imshow(img, cmap=cmap, vmin=0, vmax=4, interpolation="nearest", aspect="auto")
        on, off = int((code[sel] == 2).sum()), int((code[sel] == 3).sum())
        ax.set_title(f"tile {t}: {on} stuck-on, {off} stuck-off", fontsize=9)
        ax.set_xlabel("column (index)")
        ax.set_ylabel("row (index)")
    handles = [Patch(facecolor=_FAULT_COLOURS[k], edgecolor="0.4", label=_FAULT_NAMES[k])
               for k in sorted(present)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3),
               fontsize=8, frameon=False)
    return [_save(fig, out / f"{stem}_map.png")]


def plot_endurance(s: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    fig, axes = _figure()
    ax = axes[0, 0]
    for cond, g in s.groupby("condition", sort=False):
        g = g.sort_values("cycle")
        x = g["cycle"].clip(lower=1)
        (line,) = ax.plot(x, g["median_window_siemens"] * _US, "-", label=f"{cond}: median")
        ax.fill_between(
            x,
            g["p10_window_siemens"] * _US,
            g["median_window_siemens"] * _US,
            alpha=0.2,
            color=line.get_color(),
            label=f"{cond}: 10th percentile to median",
        )
    ax.set_xscale("log")
    ax.set_xlabel("cycle (count)")
    ax.set_ylabel("window g_LRS − g_HRS [µS]")
    ax.legend(fontsize=8)
    return [_save(fig, out / f"{stem}_window.png")]

