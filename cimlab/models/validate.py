"""A device model's predictions against a store's measurements, cell by cell.

A *validation cell* is one (effect, level, time, temperature) group of measurements:

``relaxation`` (runs ``relaxation`` and ``imported``: ``reads``)
    The conductances ``g_siemens`` of the level's cells at one time point (``time_index`` where the
    run has it, else the times clustered by :func:`time_points`), time 0 (the verify reads the
    programming model is fitted on) left out, and so are cells whose verify read ``g0_siemens`` is
    not in their level (stuck cells, failed verifies:
    :func:`cimlab.models.fit.relaxation.in_level`, as the fitter does).
    Predicted: :meth:`DeviceModel.predicted_moments` at the level's mean target,
    that time and temperature (room temperature within :data:`ROOM_TOLERANCE_K` of the
    model's reference), with one read's noise only when the model's read noise was measured
    (``read_noise.fit`` set; otherwise the verify spread the programming sigma was fitted on
    already holds it, and adding it would count it twice).
``bake_retention`` (runs ``bake_retention``: ``reads``), per temperature
    The change ``d = g(step) - g(step 0)`` of each cell since its reference read of the same
    bake (repeats averaged; cells whose reference read is not in their level left out, as
    for relaxation), per (bake, level, step > 0): the mean shift and the spread of the
    shift, what a bake does to the stored weights. Predicted per cell from its reference read
    ``g0``: relaxation from the reference time ``t_a`` to ``t_a + t_eq``, ``t_eq`` the
    Arrhenius-equivalent room time of the bake (:meth:`Retention.equivalent_time`):
    ``mean_i = shift(g0_i, t_a + t_eq) - shift(g0_i, t_a)``, ``var_i = var(g0_i, t_a + t_eq)
    - var(g0_i, t_a)`` (+ twice the read variance, measured read noise only; + the 1/f
    read noise between the two reads, ``F(g0_i, t_bake)`` of the model's spectrum
    (:meth:`ReadNoiseSpectrum.flicker_pair_variance`) when it has a 1/f part, as the retention
    fit adds it: the soak time as the lag, ``F`` is flat beyond ``1 / f_lo_hz``, seconds,
    so the ramps do not matter; the part of it a measured read noise already holds at its
    pairs' ms lag is counted twice, < 10 % of ``F`` at an hour on the techa profile); the group's
    prediction is the mixture over its cells: mean of ``mean_i``, variance ``mean(var_i) +
    var(mean_i)``. ``t_a``: the median ``time_s`` of the step-0 reads (since the cell's last
    pulse) where the run has it, else the retention fit's ``gof["t_off_s"]``, else 0.
``read_noise`` (runs ``read_noise_series``: ``samples``; ``read_fluctuation``: ``reads``)
    Series: per series and lag ``tau`` (:data:`SERIES_LAGS` samples; ``time_s`` = ``tau``),
    the spread of the difference of two reads ``tau`` apart, as one read's sigma
    ``sqrt(mean((g(t + tau) - g(t))^2) / 2)`` (a drift over the series does not enter, as it
    would in the s.d. around the series' mean). Predicted: ``sqrt(sigma_w^2 + F(g, tau) / 2)``
    with the model's read-noise spectrum (white part ``sigma_w`` and its 1/f structure
    function ``F``, :meth:`ReadNoiseSpectrum.flicker_pair_variance`) when the spectrum was
    fitted or has a 1/f part, only at lags inside its fitted band (``tau <= 1 / f_lo_hz``),
    else ``read_noise.sigma(g)`` (white noise: the same at every lag). Read fluctuation: the
    spread of repeated reads of a cell around its own mean, pooled over the level's cells,
    against ``read_noise.sigma(g)``. At the measured mean; the read-noise law has no mean:
    ``predicted_mean`` and ``mean_err_in_sigma`` are NaN (``null`` in JSON).

Per cell: ``sigma_rel_err = predicted_sigma / measured_sigma - 1``, ``mean_err_in_sigma =
(predicted_mean - measured_mean) / measured_sigma``. A cell is *within* when
``|sigma_rel_err| <= tolerance``; the summary also counts means within ``mean_tolerance``
sigmas. SI units throughout (S, s, C for ``temp_c``).

Cross-validation: ``validate(model, tables, cells=ids)`` keeps only the measurements of the
device cells ``ids``; :func:`kfold_cells` splits a store's cells into folds and
:func:`subset_tables` gives the tables of the other folds to fit on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlab.errors import ConfigError
from cimlab.models.device_model import DeviceModel, rectified_moments
from cimlab.models.fit.relaxation import in_level
from cimlab.models.fit.store import TableSet
from cimlab.units import KELVIN_OFFSET

#: Default acceptance of a predicted spread (relative), the issue-12 / techC criterion.
DEFAULT_TOLERANCE = 0.15
#: Default acceptance of a predicted mean, in measured sigmas.
DEFAULT_MEAN_TOLERANCE = 0.5
#: Reads this close to the model's reference temperature count as room temperature [K].
ROOM_TOLERANCE_K = 10.0
#: Without a ``time_index`` column, reads less than this apart in log10 time are one time
#: point (a factor 1.12: measured read times scatter by a few % around nominal points).
TIME_GAP_DECADES = 0.05
#: Groups with fewer measurements than this are not validated (a sigma needs a few).
MIN_N = 5
#: run kind -> tables validation reads from it.
VALIDATED_TABLES: dict[str, tuple[str, ...]] = {
    "relaxation": ("reads",), "imported": ("reads",), "bake_retention": ("reads",),
    "read_fluctuation": ("reads",), "read_noise_series": ("samples",),
}
EFFECTS = ("relaxation", "bake_retention", "read_noise")
#: Lags [samples] at which a read-noise series is validated (decades: the white part at one
#: sample, the 1/f part growing with the lag); a lag needs at least SERIES_MIN_SPANS of itself
#: in the series.
SERIES_LAGS = (1, 10, 100, 1000)
SERIES_MIN_SPANS = 10
CELL_FIELDS = ("effect", "level", "time_s", "temp_c", "n", "measured_mean", "predicted_mean",
               "measured_sigma", "predicted_sigma", "sigma_rel_err", "mean_err_in_sigma")


@dataclass(frozen=True)
class ValidationCell:
    """One (effect, level, time, temperature) comparison; conductances in S, time in s."""

    effect: str
    level: int
    time_s: float
    temp_c: float
    n: int
    measured_mean: float
    predicted_mean: float
    measured_sigma: float
    predicted_sigma: float
    sigma_rel_err: float
    mean_err_in_sigma: float

    def to_json_dict(self) -> dict[str, Any]:
        return {k: _json_number(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ValidationResult:
    """All validation cells and the acceptance figures."""

    cells: tuple[ValidationCell, ...]
    tolerance: float = DEFAULT_TOLERANCE
    mean_tolerance: float = DEFAULT_MEAN_TOLERANCE
    notes: tuple[str, ...] = field(default_factory=tuple)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.cells], columns=list(CELL_FIELDS))

    @property
    def within(self) -> np.ndarray:
        """Per cell: the predicted sigma is within the tolerance."""
        e = np.array([c.sigma_rel_err for c in self.cells], dtype=float)
        return np.abs(e) <= self.tolerance

    @property
    def fraction_within(self) -> float:
        return float(self.within.mean()) if self.cells else math.nan

    @property
    def median_rel_err(self) -> float:
        e = np.array([abs(c.sigma_rel_err) for c in self.cells], dtype=float)
        return float(np.median(e)) if e.size else math.nan

    def worst(self, k: int = 5) -> list[ValidationCell]:
        """The ``k`` cells with the largest ``|sigma_rel_err|``."""
        return sorted(self.cells, key=lambda c: -abs(c.sigma_rel_err))[:k]

    def summary(self) -> dict[str, Any]:
        df = self.frame()
        by_effect = {}
        for eff, d in df.groupby("effect", sort=False):
            m = d["mean_err_in_sigma"].abs()
            by_effect[str(eff)] = {
                "cells": len(d),
                "fraction_within": float((d["sigma_rel_err"].abs() <= self.tolerance).mean()),
                "median_rel_err": float(d["sigma_rel_err"].abs().median()),
                "fraction_mean_within": (float((m[m.notna()] <= self.mean_tolerance).mean())
                                         if m.notna().any() else None)}
        m = df["mean_err_in_sigma"].abs() if len(df) else pd.Series(dtype=float)
        return {
            "tolerance": self.tolerance, "cells": len(self.cells),
            "fraction_within": _json_number(self.fraction_within),
            "median_rel_err": _json_number(self.median_rel_err),
            "mean_tolerance_sigma": self.mean_tolerance,
            "fraction_mean_within": (_json_number(float((m[m.notna()] <= self.mean_tolerance)
                                                        .mean())) if m.notna().any() else None),
            "by_effect": by_effect,
            "worst": [c.to_json_dict() for c in self.worst()],
            "notes": list(self.notes),
        }

    def to_json_dict(self) -> dict[str, Any]:
        return {"cells": [c.to_json_dict() for c in self.cells], "summary": self.summary()}

    def format_table(self, max_rows: int | None = None) -> str:
        """A readable table (conductances in uS) and the summary."""
        df = self.frame()
        if df.empty:
            return "no validation cells (the store has no runs this model predicts)"
        show = pd.DataFrame({
            "effect": df["effect"], "level": df["level"], "time (s)": df["time_s"].map(_g),
            "T (C)": df["temp_c"].map(lambda x: f"{x:.0f}"), "n": df["n"],
            "mean meas (uS)": (df["measured_mean"] * 1e6).map(_f),
            "mean pred (uS)": (df["predicted_mean"] * 1e6).map(_f),
            "sigma meas (uS)": (df["measured_sigma"] * 1e6).map(_f),
            "sigma pred (uS)": (df["predicted_sigma"] * 1e6).map(_f),
            "sigma err": df["sigma_rel_err"].map(lambda x: f"{x:+.1%}"),
            "mean err (sd)": df["mean_err_in_sigma"].map(lambda x: "-" if x != x
                                                          else f"{x:+.2f}"),
            "ok": np.where(self.within, "", "x"),
        })
        lines = []
        if max_rows is not None and len(show) > max_rows:
            order = np.argsort(-df["sigma_rel_err"].abs().to_numpy())[:max_rows]
            lines.append(f"(the {max_rows} worst of {len(show)} cells; --max-rows to see more)")
            show = show.iloc[np.sort(order)]
        lines.insert(0, show.to_string(index=False))
        s = self.summary()
        lines.append("")
        lines.append(f"{s['cells']} cells; sigma within {self.tolerance:.0%}: "
                     f"{self.within.sum()}/{len(self.cells)} ({s['fraction_within']:.1%}); "
                     f"median |sigma error| {s['median_rel_err']:.1%}")
        if s["fraction_mean_within"] is not None:
            lines.append(f"means within {self.mean_tolerance:g} sigma: "
                         f"{s['fraction_mean_within']:.1%}")
        for eff, e in s["by_effect"].items():
            fm = e["fraction_mean_within"]
            extra = ("" if fm is None
                     else f", means within {self.mean_tolerance:g} sd {fm:.0%}")
            lines.append(f"  {eff}: {e['cells']} cells, sigma within {e['fraction_within']:.0%}, "
                         f"median |error| {e['median_rel_err']:.1%}{extra}")
        w = self.worst(1)
        if w:
            c = w[0]
            lines.append(f"worst: {c.effect} level {c.level}, t = {c.time_s:g} s, "
                         f"{c.temp_c:.0f} C: sigma {c.sigma_rel_err:+.1%}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- tables
def load_tables(store: Any) -> TableSet:
    """The tables validation reads, from a store path or an open :class:`cimlab.store.Store`
    (completed runs only), concatenated over runs with a ``run`` column."""
    from cimlab.store import Store

    if isinstance(store, (str, Path)):
        path = Path(store)
        if not path.exists():
            raise ConfigError(path, "file", "an existing store (HDF5) file", "no such file")
        with Store.open(path, "r") as s:
            return load_tables(s)
    ts = TableSet(source=str(getattr(store, "path", "")))
    for run in sorted(store, key=lambda r: r.uid):
        if run.kind not in VALIDATED_TABLES or run.status != "completed":
            continue
        for name in VALIDATED_TABLES[run.kind]:
            if name not in set(run.tables):
                continue
            df = run.table(name).assign(run=run.uid)
            prev = ts.tables.setdefault(run.kind, {}).get(name)
            ts.tables[run.kind][name] = df if prev is None else pd.concat([prev, df],
                                                                           ignore_index=True)
        ts.run_uids.append(run.uid)
    return ts


def _as_tableset(tables: Any) -> TableSet:
    if isinstance(tables, TableSet):
        return tables
    if isinstance(tables, Mapping):
        ts = TableSet(source="<frames>")
        for kind, tabs in tables.items():
            ts.tables[kind] = {name: (df if "run" in df.columns else df.assign(run=kind))
                               for name, df in tabs.items()}
        return ts
    return load_tables(tables)


def subset_tables(tables: Any, cells: Iterable[int], exclude: bool = False) -> TableSet:
    """The tables with only the rows of device cells ``cells`` (or all others, ``exclude``):
    fit on one part of the cells, validate on the rest."""
    ts = _as_tableset(tables)
    ids = np.unique(np.asarray(list(cells) if not isinstance(cells, np.ndarray) else cells,
                               dtype=np.int64))
    out = TableSet(source=ts.source, run_uids=list(ts.run_uids), sha256="")
    for kind, tabs in ts.tables.items():
        for name, df in tabs.items():
            if "cell" in df.columns:
                m = np.isin(df["cell"].to_numpy(dtype=np.int64), ids)
                df = df[~m if exclude else m]
            out.tables.setdefault(kind, {})[name] = df
    return out


def kfold_cells(tables: Any, k: int = 5, seed: int = 0,
                kinds: Iterable[str] | None = None) -> list[np.ndarray]:
    """The device cells of ``tables`` (runs of ``kinds``, default all validated kinds) in ``k``
    random folds of (nearly) equal size, a ``numpy.random.Generator(seed)`` permutation."""
    if k < 2:
        raise ConfigError(None, "k", "at least 2 folds", k)
    ts = _as_tableset(tables)
    ids = []
    for kind in kinds or VALIDATED_TABLES:
        for df in ts.tables.get(kind, {}).values():
            if "cell" in df.columns:
                ids.append(df["cell"].to_numpy(dtype=np.int64))
    cells = np.unique(np.concatenate(ids)) if ids else np.empty(0, np.int64)
    perm = np.random.default_rng(seed).permutation(cells)
    return [np.sort(f) for f in np.array_split(perm, k)]


# --------------------------------------------------------------------------- predictions
def _temp_arg(model: DeviceModel, temp_k: float) -> float | None:
    return None if abs(temp_k - model.retention.t_ref_k) <= ROOM_TOLERANCE_K else temp_k


def _read_measured(model: DeviceModel) -> bool:
    return model.read_noise.fit is not None


def time_points(t: np.ndarray, gap_decades: float = TIME_GAP_DECADES) -> np.ndarray:
    """Index of the time point of each read: reads whose times lie within ``gap_decades`` of
    the next are one point (per-read measured times scatter around the nominal points)."""
    t = np.asarray(t, dtype=float)
    u = np.unique(t)
    lt = np.log10(np.maximum(u, 1e-300))
    new = np.ones(u.size, bool)
    new[1:] = (np.diff(lt) > gap_decades) | (u[:-1] <= 0)
    return (np.cumsum(new) - 1)[np.searchsorted(u, t)]


def _relaxation_cells(model: DeviceModel, df: pd.DataFrame) -> list[ValidationCell]:
    if "time_index" in df.columns:
        tkey = "time_index"
    else:
        tkey = "_time_point"
        df = df.assign(_time_point=time_points(df["time_s"].to_numpy()))
    out = []
    include_read = _read_measured(model)
    if "g0_siemens" in df.columns:  # stuck cells / failed verifies: not samples of their level
        keep = in_level((df["run"].astype(str) + ":" + df["level"].astype(str)).to_numpy(),
                        df["g0_siemens"].to_numpy(dtype=float))
        df = df[keep]
    temp = df["temp_k"] if "temp_k" in df.columns else pd.Series(model.retention.t_ref_k,
                                                                   index=df.index)
    df = df.assign(_temp=temp.round(1))
    for (_, level, _, temp_k), d in df.groupby(["run", "level", tkey, "_temp"], sort=True):
        t = float(np.median(d["time_s"]))
        g = d["g_siemens"].to_numpy(dtype=float)
        if t <= 0 or g.size < MIN_N:
            continue
        target = float(d["target_siemens"].mean())
        mu, sd = model.predicted_moments(target, t, _temp_arg(model, float(temp_k)),
                                         include_read=include_read)
        temp_c = float(d["temp_k"].mean() if "temp_k" in d.columns else temp_k) - KELVIN_OFFSET
        out.append(_cell("relaxation", level, t, temp_c, g.size,
                         float(g.mean()), float(mu), float(g.std(ddof=1)), float(sd)))
    return out


def _reference_time(model: DeviceModel, ref: pd.DataFrame) -> float:
    if "time_s" in ref.columns:
        t = ref["time_s"].to_numpy(dtype=float)
        t = t[np.isfinite(t)]
        if t.size:
            return float(np.median(t))
    fit = model.retention.fit
    if fit is not None and isinstance(fit.gof, Mapping) and "t_off_s" in fit.gof:
        return float(fit.gof["t_off_s"])
    return 0.0


def _bake_cells(model: DeviceModel, df: pd.DataFrame) -> list[ValidationCell]:
    if "temp_index" not in df.columns:
        df = df.assign(temp_index=df.groupby("temp_k").ngroup())
    out = []
    rel = model.relaxation
    read_var2 = 2.0 if _read_measured(model) else 0.0
    spec = model.read_noise_spectrum
    for _, bake in df.groupby(["run", "temp_index"], sort=True):
        per = bake.groupby(["cell", "step"], sort=False).agg(
            g=("g_siemens", "mean"), level=("level", "first"), temp_k=("temp_k", "first"),
            bake_time_s=("bake_time_s", "first")).reset_index()
        ref = per[per["step"] == 0].set_index("cell")
        if ref.empty:
            continue
        t_a = _reference_time(model, bake[bake["step"] == 0])
        after = per[(per["step"] > 0) & per["cell"].isin(ref.index)]
        after = after.assign(g0=ref["g"].reindex(after["cell"]).to_numpy())
        after = after[in_level(after["level"].astype(str).to_numpy(), after["g0"].to_numpy())]
        for (level, _step), d in after.groupby(["level", "step"], sort=True):
            if len(d) < MIN_N:
                continue
            g0 = d["g0"].to_numpy(dtype=float)
            dd = d["g"].to_numpy(dtype=float) - g0
            temp_k = float(d["temp_k"].iloc[0])
            t_bake = d["bake_time_s"].to_numpy(dtype=float)
            t_eq = np.asarray(model.retention.equivalent_time(t_bake, temp_k), dtype=float)
            m_i = np.asarray(rel.mean_shift(g0, t_a + t_eq)) - np.asarray(rel.mean_shift(g0, t_a))
            v_i = np.asarray(rel.variance(g0, t_a + t_eq)) - np.asarray(rel.variance(g0, t_a))
            v_i = v_i + read_var2 * np.asarray(model.read_noise.sigma(g0)) ** 2
            if spec.a_peak > 0.0:  # the slow 1/f noise between the reads, a bake apart
                v_i = v_i + np.asarray(spec.flicker_pair_variance(g0, t_bake))
            # the floor at 0 S: a cell cannot end below 0, its change not below -g0
            m1, s1 = rectified_moments(g0 + m_i, np.maximum(v_i, 0.0))
            mean = float(np.mean(m1 - g0))
            var = float(np.mean(s1**2) + np.var(m1 - g0))
            out.append(_cell("bake_retention", level, float(np.median(t_bake)),
                             temp_k - KELVIN_OFFSET, dd.size, float(dd.mean()), mean,
                             float(dd.std(ddof=1)), math.sqrt(max(var, 0.0))))
    return out


def _series_cells(model: DeviceModel, df: pd.DataFrame) -> list[ValidationCell]:
    spec = model.read_noise_spectrum
    use_spec = spec.fit is not None or spec.a_peak > 0.0
    out = []
    for (_, _, level), d in df.groupby(["run", "cell", "level"], sort=True):
        d = d.sort_values("sample" if "sample" in d.columns else "time_s")
        g = d["g_siemens"].to_numpy(dtype=float)
        if g.size < MIN_N:
            continue
        if "fs_hz" in d.columns:
            dt = 1.0 / float(d["fs_hz"].iloc[0])
        else:
            dt = float(np.median(np.diff(d["time_s"].to_numpy(dtype=float))))
        if not dt > 0:
            continue
        mean = float(g.mean())
        temp_c = float(d["temp_k"].mean()) - KELVIN_OFFSET if "temp_k" in d.columns else 25.0
        for k in SERIES_LAGS:
            tau = k * dt
            if g.size < SERIES_MIN_SPANS * k or (use_spec and tau > 1.0 / spec.f_lo_hz):
                continue
            diff = g[k:] - g[:-k]
            measured = math.sqrt(float(np.mean(diff * diff)) / 2.0)
            if use_spec:
                pred = math.sqrt(float(spec.white_sigma(mean)) ** 2
                                 + float(spec.flicker_pair_variance(mean, tau)) / 2.0)
            else:
                pred = float(model.read_noise.sigma(mean))
            out.append(_cell("read_noise", level, tau, temp_c, diff.size, mean, math.nan,
                             measured, pred))
    return out


def _fluctuation_cells(model: DeviceModel, df: pd.DataFrame) -> list[ValidationCell]:
    out = []
    for (_, level), d in df.groupby(["run", "level"], sort=True):
        per = d.groupby("cell")["g_siemens"]
        var = per.var(ddof=1).dropna()
        if var.size < MIN_N:
            continue
        mean = float(d["g_siemens"].mean())
        t = float(np.median(d["time_s"])) if "time_s" in d.columns else math.nan
        sd = model.read_noise.sigma(mean, t if t == t else None)
        out.append(_cell("read_noise", level, t, 25.0, len(d), mean, math.nan,
                         float(np.sqrt(var.mean())), float(sd)))
    return out


def _cell(effect: str, level: Any, time_s: float, temp_c: float, n: int, m_mean: float,
          p_mean: float, m_sd: float, p_sd: float) -> ValidationCell:
    rel = p_sd / m_sd - 1.0 if m_sd > 0 else math.inf
    z = (p_mean - m_mean) / m_sd if m_sd > 0 else math.nan
    return ValidationCell(effect, int(level), float(time_s), float(temp_c), int(n), m_mean,
                          p_mean, m_sd, p_sd, float(rel), float(z))


def validate(model: DeviceModel, tables: Any, cells: Iterable[int] | None = None,
             tolerance: float = DEFAULT_TOLERANCE,
             mean_tolerance: float = DEFAULT_MEAN_TOLERANCE,
             effects: Iterable[str] | None = None) -> ValidationResult:
    """Compare ``model``'s predictions with the measurements in ``tables`` (a
    :class:`~cimlab.models.fit.store.TableSet`, ``{kind: {table: DataFrame}}``, a store path or
    an open store), per (effect, level, time, temperature) cell: ``relaxation`` (mean and
    spread of a level's reads at a time point against
    :meth:`DeviceModel.predicted_moments`), ``bake_retention`` (mean and spread of each
    cell's change since its reference read, per bake temperature and step) and
    ``read_noise`` (spread of repeated reads of a cell around its mean). A cell is within
    when ``|predicted_sigma / measured_sigma - 1| <= tolerance``; the summary also counts
    means within ``mean_tolerance`` measured sigmas.

    ``cells``: only the measurements of these device cells (held-out cells of a k-fold split,
    :func:`kfold_cells`). ``effects``: a subset of :data:`EFFECTS`.
    """
    if not (tolerance > 0):
        raise ConfigError(None, "tolerance", "a relative tolerance > 0 (e.g. 0.15)", tolerance)
    if not (mean_tolerance > 0):
        raise ConfigError(None, "mean_tolerance", "a tolerance > 0 sigmas", mean_tolerance)
    wanted = tuple(effects) if effects is not None else EFFECTS
    for e in wanted:
        if e not in EFFECTS:
            raise ConfigError(None, "effects", f"one of {', '.join(EFFECTS)}", e)
    ts = _as_tableset(tables)
    if cells is not None:
        ts = subset_tables(ts, cells)
    out: list[ValidationCell] = []
    notes: list[str] = []
    if "relaxation" in wanted:
        for kind in ("relaxation", "imported"):
            df = ts.get(kind, "reads")
            if df is not None and not df.empty:
                out += _relaxation_cells(model, df)
    if "bake_retention" in wanted:
        df = ts.get("bake_retention", "reads")
        if df is not None and not df.empty:
            out += _bake_cells(model, df)
            if model.retention.fit is None:
                notes.append("the model's retention (Arrhenius) was not fitted: bake "
                             "predictions use its literature prior")
    if "read_noise" in wanted:
        df = ts.get("read_noise_series", "samples")
        if df is not None and not df.empty:
            out += _series_cells(model, df)
        df = ts.get("read_fluctuation", "reads")
        if df is not None and not df.empty and "repeat" in df.columns:
            out += _fluctuation_cells(model, df)
    if any(c.effect == "relaxation" for c in out) and not _read_measured(model):
        notes.append("read noise not measured for this model: relaxation spreads are "
                     "predicted without an extra read (the verify spread holds it)")
    return ValidationResult(tuple(out), float(tolerance), float(mean_tolerance), tuple(notes))


def _key(c: ValidationCell) -> tuple:
    t = round(math.log10(c.time_s), 2) if c.time_s > 0 else c.time_s
    return (c.effect, c.level, t, round(c.temp_c, 1))


def cross_validate(tables: Any, k: int = 5, seed: int = 0,
                   fit: Callable[[TableSet], DeviceModel] | None = None,
                   tolerance: float = DEFAULT_TOLERANCE,
                   mean_tolerance: float = DEFAULT_MEAN_TOLERANCE,
                   effects: Iterable[str] | None = None) -> ValidationResult:
    """k-fold cross-validation over cells: every cell is predicted by the model fitted on the
    other folds (``fit(tables) -> DeviceModel``, default
    ``cimlab.models.fit.fit_tables(tables).model``), and each validation cell compares the
    measurement over ALL its cells with the pooled out-of-fold prediction (the mixture of the
    folds' predicted distributions, weighted by their cell counts).

    Pooling matters: a fold holds 1/k of the cells, and a sigma measured on ~100 heavy-tailed
    cells scatters by up to ~25 % (techC), so per-fold figures measure the sampling noise of
    the held-out sigma as much as the model. The per-fold fractions are kept in ``notes``.
    """
    if fit is None:
        from cimlab.models.fit import fit_tables

        def fit(ts: TableSet) -> DeviceModel:
            return fit_tables(ts, name="cross-validation").model

    ts = _as_tableset(tables)
    folds = kfold_cells(ts, k=k, seed=seed)
    pooled: dict[tuple, list[tuple[int, float, float]]] = {}
    per_fold = []
    model = None
    for i, fold in enumerate(folds):
        model = fit(subset_tables(ts, fold, exclude=True))
        res = validate(model, ts, cells=fold, tolerance=tolerance,
                       mean_tolerance=mean_tolerance, effects=effects)
        per_fold.append(f"fold {i + 1}/{k} ({fold.size} cells): {res.fraction_within:.1%} "
                        "within on its own cells")
        for c in res.cells:
            pooled.setdefault(_key(c), []).append((c.n, c.predicted_mean, c.predicted_sigma))
    if model is None:
        return ValidationResult((), tolerance, mean_tolerance)
    full = validate(model, ts, tolerance=tolerance, mean_tolerance=mean_tolerance,
                    effects=effects)
    cells = []
    for c in full.cells:
        parts = pooled.get(_key(c))
        if not parts:
            continue
        n = np.array([p[0] for p in parts], dtype=float)
        mu = np.array([p[1] for p in parts], dtype=float)
        sd = np.array([p[2] for p in parts], dtype=float)
        w = n / n.sum()
        if np.all(np.isnan(mu)):
            p_mean, p_sd = math.nan, float(np.sqrt(np.sum(w * sd**2)))
        else:
            p_mean = float(np.sum(w * mu))
            p_sd = float(np.sqrt(max(np.sum(w * (sd**2 + mu**2)) - p_mean**2, 0.0)))
        cells.append(_cell(c.effect, c.level, c.time_s, c.temp_c, c.n, c.measured_mean, p_mean,
                           c.measured_sigma, p_sd))
    notes = (f"{k}-fold cross-validation over cells (seed {seed}): out-of-fold predictions "
             "pooled per cell", *per_fold, *full.notes)
    return ValidationResult(tuple(cells), float(tolerance), float(mean_tolerance), notes)


def validate_store(model: DeviceModel | str | Path, store: Any, **kwargs: Any
                   ) -> ValidationResult:
    """:func:`validate` with a model (or its JSON path) and a store path."""
    if not isinstance(model, DeviceModel):
        model = DeviceModel.load(model)
    return validate(model, load_tables(store), **kwargs)


def _json_number(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _g(x: float) -> str:
    return "-" if x != x else f"{x:g}"


def _f(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


__all__ = ["DEFAULT_TOLERANCE", "EFFECTS", "ValidationCell", "ValidationResult", "cross_validate",
           "kfold_cells",
           "load_tables", "subset_tables", "validate", "validate_store"]
