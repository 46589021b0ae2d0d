"""Fit every effect a store has data for: ``fit_store(store) -> DeviceModel``.

Tables are gathered by run kind (docs/architecture.md section 5; runs of the same kind are
concatenated, their levels kept apart), then fitted in dependency order:

1. window: the programmed targets (min, max, number of distinct levels);
2. read noise (``read_fluctuation``), first pass without relaxation; the read-noise
   spectrum (``read_noise_series``), whose white part is the read noise where no
   ``read_fluctuation`` run exists (:func:`white_read_noise`);
3. relaxation (``relaxation`` and ``imported`` reads), with that read noise;
4. read noise again, now subtracting relaxation between paired reads;
5. programming error per mode (the ``programming_error`` run's ``programmed`` table; a mode it
   lacks from the verify logs of relaxation / read-fluctuation runs; for an imported set, the
   verify reads ``g0_siemens`` of its reads), with the measured read noise removed;
6. retention (``bake_retention``) with the relaxation and read-noise models;
7. binary conditions (``ber`` bits/conditions, ``endurance`` cycles); 8. stuck-at
   (``fault_map``). The wire resistance has no campaign: it keeps the literature value.

Effects without data keep :meth:`DeviceModel.default` values (``source`` says so). Only runs
with status "completed" are used unless ``include_unfinished``. Provenance records the store
path, the uids of the runs used and a SHA-256 over the exact table contents the fits read
(:func:`hash_tables`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlab.models.device_model import DeviceModel, Provenance
from cimlab.models.effects import K_B_EV, SIGMA_FORMS, ConductanceWindow, ReadNoise
from cimlab.models.fit.binary import fit_binary
from cimlab.models.fit.model_choice import choose_relaxation_form
from cimlab.models.fit.programming import fit_programming
from cimlab.models.fit.read_noise import fit_read_noise, read_pairs
from cimlab.models.fit.read_noise_spectrum import fit_read_noise_spectrum
from cimlab.models.fit.relaxation import RelaxationFit, fit_relaxation
from cimlab.models.fit.retention import RetentionFit, fit_retention
from cimlab.models.fit.stuck import fit_stuck
from cimlab.models.params import FitInfo
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum
from cimlab.models.uncertainty import drop_degenerate_intervals
from cimlab.units import KELVIN_OFFSET

#: run kind -> tables the fitters read from it.
USED_TABLES: dict[str, tuple[str, ...]] = {
    "programming_error": ("programmed",),
    "read_fluctuation": ("reads", "programmed"),
    "relaxation": ("reads", "programmed"),
    "imported": ("reads",),
    "bake_retention": ("reads", "programmed", "bakes"),
    "ber": ("bits", "conditions"),
    "endurance": ("cycles",),
    "fault_map": ("faults",),
    "read_noise_series": ("samples",),
}
#: Fraction of the read-fluctuation reads that must carry a read time for the read noise to
#: be fitted less the spectrum's 1/f at each pair's lag (the rest of the pairs is left out;
#: below it the read-noise model and its median pair lag are used instead).
MIN_TIMED_FRACTION = 0.9


@dataclass
class TableSet:
    """The tidy tables of a store, by run kind: ``{kind: {table: DataFrame}}`` (concatenated
    over runs, with a ``run`` column), plus the runs used and a content hash."""

    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    run_uids: list[str] = field(default_factory=list)
    sha256: str = ""
    source: str = ""

    def get(self, kind: str, table: str) -> pd.DataFrame | None:
        return self.tables.get(kind, {}).get(table)


@dataclass
class FitReport:
    """What :func:`fit_store` produced: the model, plus the intermediate fits (for plots)."""

    model: DeviceModel
    tables: TableSet
    relaxation: RelaxationFit | None = None
    retention: RetentionFit | None = None
    fitted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _update_hash(h: Any, uid: str, name: str, df: pd.DataFrame) -> None:
    h.update(f"{uid}\0{name}\0{len(df)}\0".encode())
    for col in df.columns:
        h.update(f"{col}\0".encode())
        v = df[col]
        if v.dtype.kind in "biuf":
            h.update(np.ascontiguousarray(v.to_numpy()).tobytes())
        else:
            h.update("\0".join(map(str, v.to_numpy())).encode())


def hash_tables(items: Iterable[tuple[str, str, pd.DataFrame]]) -> str:
    """SHA-256 (hex) of (run uid, table name, columns, values) in the given order."""
    h = hashlib.sha256()
    for uid, name, df in items:
        _update_hash(h, uid, name, df)
    return h.hexdigest()


def collect(store: Any, include_unfinished: bool = False) -> TableSet:
    """Read the tables the fitters use from an open :class:`cimlab.store.Store`."""
    ts = TableSet(source=str(getattr(store, "path", "")))
    items = []
    runs = sorted(store, key=lambda r: r.uid)
    for run in runs:
        kind = run.kind
        if kind not in USED_TABLES:
            continue
        if run.status != "completed" and not include_unfinished:
            continue
        have = set(run.tables)
        used = False
        for name in USED_TABLES[kind]:
            if name not in have:
                continue
            df = run.table(name)
            if df.empty:
                continue
            if name == "bakes" and "ambient_c" in (run.meta or {}):
                df = df.assign(ambient_k=float(run.meta["ambient_c"]) + KELVIN_OFFSET)
            items.append((run.uid, name, df))
            df = df.assign(run=run.uid)
            prev = ts.tables.setdefault(kind, {}).get(name)
            ts.tables[kind][name] = df if prev is None else pd.concat([prev, df],
                                                                       ignore_index=True)
            used = True
        if used:
            ts.run_uids.append(run.uid)
    ts.sha256 = hash_tables(items)
    return ts


def tables_from_frames(frames: Mapping[str, Mapping[str, pd.DataFrame]],
                       source: str = "<frames>") -> TableSet:
    """A :class:`TableSet` from DataFrames (tests, external tools): ``{kind: {table: df}}``."""
    ts = TableSet(source=source)
    items = []
    for kind in sorted(frames):
        for name in sorted(frames[kind]):
            df = frames[kind][name]
            items.append((kind, name, df))
            ts.tables.setdefault(kind, {})[name] = df.assign(run=kind) if "run" not in \
                df.columns else df
    ts.run_uids = sorted(frames)
    ts.sha256 = hash_tables(items)
    return ts


def _relevel(df: pd.DataFrame) -> pd.DataFrame:
    """Make ``level`` unique across runs (level k of run A and of run B are different groups)."""
    if "run" not in df.columns or df["run"].nunique() <= 1:
        return df
    key = df["run"].astype(str) + ":" + df["level"].astype(str)
    return df.assign(level=pd.factorize(key, sort=True)[0])


def _targets(ts: TableSet) -> np.ndarray:
    out = []
    for kind, tabs in ts.tables.items():
        for df in tabs.values():
            if "target_siemens" in df.columns and kind != "ber":
                out.append(df["target_siemens"].to_numpy(dtype=float))
    return np.concatenate(out) if out else np.empty(0)


def fit_window(ts: TableSet, default: ConductanceWindow) -> ConductanceWindow | None:
    """Window from the programmed targets (None without any)."""
    t = _targets(ts)
    t = t[np.isfinite(t)]
    if t.size == 0:
        return None
    levels = np.unique(np.round(t / 1e-9) * 1e-9)
    fit = FitInfo(method="range and count of the programmed targets", n=int(t.size),
                  notes="targets are set points, not estimates: no uncertainty")
    return ConductanceWindow(g_min=float(levels.min()), g_max=float(levels.max()),
                             levels=int(max(levels.size, 2)), source="fit", fit=fit)


def _with_pulse_offset(reads: pd.DataFrame | None,
                       programmed: pd.DataFrame | None) -> pd.DataFrame | None:
    """Relaxation times from each cell's own last programming pulse.

    Runs recorded by the current procedures already time every read from the cell's own last
    pulse and carry ``g0_time_s``: returned unchanged. Older runs (no ``g0_time_s`` column)
    timed reads from the end of programming the whole batch, with the offset in the run's
    ``programmed`` table (``time_s`` = end of programming - last pulse of the cell); it is
    added to ``time_s`` here."""
    if reads is None or programmed is None or "time_s" not in programmed.columns:
        return reads
    if "g0_time_s" in reads.columns:
        return reads
    keys = ["run", "cell"] if "run" in reads.columns and "run" in programmed.columns else ["cell"]
    off = programmed.drop_duplicates(keys, keep="last").set_index(keys)["time_s"]
    o = off.reindex(pd.MultiIndex.from_frame(reads[keys])).to_numpy(dtype=float)
    o = np.where(np.isfinite(o), o, 0.0)
    return reads.assign(time_s=reads["time_s"].to_numpy(dtype=float) + o)


def _programmed_from_reads(reads: pd.DataFrame) -> pd.DataFrame:
    """Verify-mode programming table from the g0 of relaxation-like reads (one row per cell)."""
    first = reads.sort_values("time_s").drop_duplicates(["run", "cell"]) if "run" in \
        reads.columns else reads.sort_values("time_s").drop_duplicates("cell")
    return pd.DataFrame({"cell": first["cell"].to_numpy(), "level": first["level"].to_numpy(),
                         "target_siemens": first["target_siemens"].to_numpy(dtype=float),
                         "g_siemens": first["g0_siemens"].to_numpy(dtype=float), "mode": "verify",
                         "time_s": 0.0})


def _require_time_points(reads: pd.DataFrame, g_ref: float, retention: Any,
                         source: str) -> None:
    """A relaxation fit needs 2 or more time points after programming with 5 or more cells
    of one level each (the groups the fit uses): else
    :class:`~cimlab.errors.InsufficientDataError` naming what is missing and what to measure."""
    from cimlab.errors import InsufficientDataError
    from cimlab.models.fit.relaxation import _group

    try:
        _work, groups = _group(reads, retention, g_ref)
    except ValueError as exc:  # a table without the columns the fit reads
        raise InsufficientDataError(f"{source or 'store'}: relaxation reads: {exc}") from None
    n_t = int(groups["tkey"].nunique()) if len(groups) else 0
    if n_t < 2:
        after = reads.loc[pd.to_numeric(reads["time_s"], errors="coerce").gt(0).to_numpy()]
        n_raw = int(after["time_index" if "time_index" in after.columns else "time_s"].nunique())
        per_level = reads.groupby("level")["cell"].nunique() if "cell" in reads.columns \
            else reads.groupby("level").size()
        raise InsufficientDataError(
            f"{source or 'store'}: the relaxation fit needs 2 or more time points after "
            f"programming, each with 5 or more cells of one level; the reads have {n_raw} time "
            f"point(s) and at most {int(per_level.max()) if len(per_level) else 0} cells per "
            f"level ({n_t} usable): measure a relaxation experiment with times_s of 2 or more "
            "entries and at least 5 cells per level (cells count >= 5 x levels, e.g. 1024 "
            "cells for 16 levels) into this store, then fit again")


def _fit_spectrum(samples: pd.DataFrame) -> ReadNoiseSpectrum | str:
    """The white + 1/f spectrum fitted to a ``read_noise_series`` ``samples`` table (one
    series per (run, cell), in sample order), or the reason it could not be fitted."""
    keys = ["run", "cell"] if "run" in samples.columns else ["cell"]
    xs, fs, levels = [], [], []
    for _, df in samples.sort_values([*keys, "sample"], kind="stable").groupby(keys, sort=True):
        xs.append(df["g_siemens"].to_numpy(dtype=float))
        fs.append(float(df["fs_hz"].iloc[0]))
        levels.append(float(df["g_siemens"].mean()))
    try:
        eff, _ = fit_read_noise_spectrum(xs, fs, levels)
    except ValueError as exc:
        return f"read_noise_series present but not fitted: {exc}"
    return eff


def white_read_noise(spectrum: ReadNoiseSpectrum) -> ReadNoise:
    """One read's noise from a fitted spectrum's white part (the quadrature form
    ``sqrt(s0^2 + (s1 g / g_ref)^2)`` at the series' read bandwidth), with its uncertainties:
    the read noise of a store whose only read-noise data is a ``read_noise_series``."""
    fit = spectrum.fit
    keys = ("s0", "s1")
    info = FitInfo(
        method="white part of the read-noise spectrum fitted to the read_noise_series run "
        "(no read_fluctuation run)", n=fit.n if fit is not None else 0, form="quadrature",
        stderr={k: v for k, v in (fit.stderr if fit else {}).items() if k in keys},
        ci95={k: v for k, v in (fit.ci95 if fit else {}).items() if k in keys},
        notes=f"one read's independent part at the series' read bandwidth "
        f"{spectrum.bandwidth_hz:.4g} Hz; the 1/f part is read_noise_spectrum's")
    return ReadNoise(form="quadrature", g_ref=spectrum.g_ref, s0=spectrum.s0, s1=spectrum.s1,
                     source="read_noise_series: white part of the fitted spectrum", fit=info)


def fit_tables(
    ts: TableSet,
    name: str = "fitted",
    progress: Callable[[str], None] | None = None,
    select: str = "bic",
    sigma_forms: Mapping[str, Sequence[str]] | None = None,
) -> FitReport:
    """Fit every effect ``ts`` has data for (see module docstring).

    ``select``: how the relaxation variance form is chosen: "bic" (on the fitted cells) or
    "cv" (5-fold validation over cells, :func:`~cimlab.models.fit.model_choice.
    choose_relaxation_form`; about 5 x the relaxation fit's time per form).
    ``sigma_forms``: the sigma(g) forms (:data:`~cimlab.models.effects.SIGMA_FORMS`) BIC may
    choose from, per effect ("read_noise", "programming"); default all (e.g. one common form
    for several chips, :mod:`cimlab.models.chip_variation`)."""
    if select not in ("bic", "cv"):
        raise ValueError(f"select must be 'bic' or 'cv', got {select!r}")
    forms_of = _sigma_forms(sigma_forms)
    from cimlab import __version__

    say = progress or (lambda _msg: None)
    dm = DeviceModel.default()
    rep = FitReport(dm, ts)
    changes: dict[str, Any] = {}
    window = fit_window(ts, dm.window)
    if window is not None:
        changes["window"] = window
        rep.fitted.append("window")
    g_ref = (window or dm.window).g_max

    # read noise (pass 1), relaxation, read noise (pass 2)
    rf = ts.get("read_fluctuation", "reads")
    read_noise = None
    if rf is not None:
        say("read noise")
        read_noise = fit_read_noise(_relevel(rf), g_ref, forms=forms_of["read_noise"])
    # the read-noise spectrum first: with a 1/f part, the relaxation and retention fits
    # count the slow noise between the two reads of each change (not as relaxation)
    series = ts.get("read_noise_series", "samples")
    spectrum: ReadNoiseSpectrum | None = None
    if series is not None and not series.empty:
        say("read-noise spectrum")
        fitted = _fit_spectrum(series)
        if isinstance(fitted, str):
            rep.skipped["read_noise_spectrum"] = fitted
        else:
            spectrum = fitted
            changes["read_noise_spectrum"] = spectrum
            rep.fitted.append("read_noise_spectrum")
    else:
        rep.skipped["read_noise_spectrum"] = "no read_noise_series run; white model kept"
    # no read_fluctuation run: one read's noise is the series' white part (the 1/f part
    # stays in the spectrum; with it the relaxation and bake fits add the 1/f between the
    # two reads of each change), instead of the literature value
    from_series = read_noise is None and spectrum is not None
    if from_series:
        read_noise = white_read_noise(spectrum)
    # the read noise the relaxation and bake fits add to each change: with a measured 1/f
    # part, the read pairs less their own 1/f plus the 1/f over the change's own interval
    # (read_lag 0); else the read-noise model (whose pairs, read_lag apart, hold the 1/f up
    # to that lag) plus the 1/f beyond it. A sigma(g) form cannot follow the 1/f part's peak
    # in g (techa profile: 90 % of a 3 ms pair at mid levels); the first keeps it out of it.
    white = spectrum is not None and rf is not None and _timed(rf)
    rn_changes, read_lag = read_noise, 0.0
    if white:
        rn_changes = fit_read_noise(_relevel(rf), g_ref, forms=forms_of["read_noise"],
                                    spectrum=spectrum)
    elif rf is not None:
        read_lag = _read_pair_lag(rf)
    relax_frames = [df for df in (_with_pulse_offset(ts.get("relaxation", "reads"),
                                                     ts.get("relaxation", "programmed")),
                                  ts.get("imported", "reads")) if df is not None]
    relaxation = None
    if relax_frames:
        say("relaxation")
        reads = _relevel(pd.concat(relax_frames, ignore_index=True))
        _require_time_points(reads, g_ref, dm.retention, ts.source)
        choice = None
        if select == "cv":
            say("relaxation form (5-fold validation over cells)")
            choice = choose_relaxation_form(reads, g_ref, retention=dm.retention,
                                            read_noise=rn_changes, spectrum=spectrum,
                                            read_lag_s=read_lag)
        rep.relaxation = fit_relaxation(reads, g_ref, retention=dm.retention,
                                        read_noise=rn_changes, spectrum=spectrum,
                                        read_lag_s=read_lag,
                                        **({"forms": (choice.form,)} if choice else {}))
        if choice is not None:
            r_ = rep.relaxation.effect
            gof = {**r_.fit.gof, **{f"cv_score_{k}": v for k, v in choice.scores.items()},
                   **{f"cv_within_{k}": v for k, v in choice.within.items()}}
            rep.relaxation.effect = dataclasses.replace(r_, fit=dataclasses.replace(
                r_.fit, gof=gof, notes=r_.fit.notes + f"; variance form '{choice.form}' "
                f"chosen by {choice.folds}-fold validation over cells (cv_score_*: mean "
                "squared log variance ratio on held-out cells)"))
        if white:  # the intercept's read noise is not the exported model: say which
            r_ = rep.relaxation.effect
            rep.relaxation.effect = dataclasses.replace(r_, fit=dataclasses.replace(
                r_.fit, notes=r_.fit.notes + "; sigma_read there: the read pairs less the "
                "spectrum's 1/f at their lag (not the exported read_noise, which holds it)"))
        relaxation = rep.relaxation.effect
        changes["relaxation"] = relaxation
        rep.fitted.append("relaxation")
    else:
        rep.skipped["relaxation"] = "no relaxation or imported run"
    if rf is not None:
        read_noise = fit_read_noise(_relevel(rf), g_ref, relaxation=relaxation,
                                    forms=forms_of["read_noise"])
        changes["read_noise"] = read_noise
        rep.fitted.append("read_noise")
        rn_changes = read_noise
        if white:
            rn_changes = fit_read_noise(_relevel(rf), g_ref, relaxation=relaxation,
                                        forms=forms_of["read_noise"], spectrum=spectrum)
    elif from_series:
        changes["read_noise"] = read_noise
        rep.fitted.append("read_noise (white part of the read_noise_series spectrum)")
    else:
        rep.skipped["read_noise"] = "no read_fluctuation run (literature value kept)"

    # programming error
    # the programming_error campaign measures the programming error on purpose (reads at a
    # defined time after programming); the verify logs of other runs are used only for a
    # mode it lacks (mixing reads taken at different times would mix different spreads)
    prog = []
    modes_seen: set[str] = set()
    for k in ("programming_error", "relaxation", "read_fluctuation"):
        p = ts.get(k, "programmed")
        if p is None:
            continue
        p = p[~p["mode"].astype(str).isin(modes_seen)]
        if len(p):
            prog.append(p)
            modes_seen |= set(p["mode"].astype(str).unique())
    imp = ts.get("imported", "reads")
    if imp is not None and "verify" not in modes_seen:
        prog.append(_programmed_from_reads(imp))
    if prog:
        say("programming error")
        # only read pairs measure a verify read's whole noise (a series' white part lacks
        # the cell's 1/f state at that instant): otherwise sigma holds one read's noise
        rn_pe = None if from_series else read_noise
        pe = fit_programming(_relevel(pd.concat(prog, ignore_index=True)), g_ref,
                             read_noise=rn_pe, forms=forms_of["programming"])
        if rn_pe is None:  # nothing to subtract: sigma holds one read's noise
            pe = [dataclasses.replace(p, read_noise="included") for p in pe]
        # the simulator's default: single-shot if measured (paper 000's scenario), else verify
        pe.sort(key=lambda p: p.mode != "single_shot")
        changes["programming"] = pe[0]
        changes["programming_other"] = tuple(pe[1:])
        rep.fitted.append("programming")
    else:
        rep.skipped["programming"] = "no programmed table"

    # retention
    bake = ts.get("bake_retention", "reads")
    if bake is not None:
        say("retention")
        rep.retention = fit_retention(_relevel(bake), relaxation or dataclasses.replace(
                                          dm.relaxation, g_ref=g_ref), g_ref,
                                      read_noise=rn_changes, t_ref_k=dm.retention.t_ref_k,
                                      ea_guess=dm.retention.ea_ev,
                                      programmed=ts.get("bake_retention", "programmed"),
                                      bakes=ts.get("bake_retention", "bakes"),
                                      spectrum=spectrum, read_lag_s=read_lag)
        changes["retention"] = rep.retention.effect
        rep.fitted.append("retention")
        # the relaxation law the retention fit used (floated with its prior, or, without a
        # relaxation run, fitted to the bakes alone): exported, so that the model predicts
        # what the fitter saw
        law = rep.retention.relaxation
        if law is not None and law != relaxation:
            if relaxation is None:
                changes["relaxation"] = law
                rep.fitted.append("relaxation (from the bakes)")
                rep.skipped.pop("relaxation", None)  # not a literature value any more
            elif law.fit is not None:
                changes["relaxation"] = dataclasses.replace(law, fit=dataclasses.replace(
                    law.fit, notes=law.fit.notes + "; t0 and rate law at the joint optimum "
                    "with the bakes (retention fit, the room-temperature fit's covariance as "
                    "prior); uncertainties from the room-temperature fit"))
    else:
        rep.skipped["retention"] = "no bake_retention run"
        if relaxation is not None:
            r = dm.retention
            tau0 = relaxation.t0_s * math.exp(-r.ea_ev / (K_B_EV * r.t_ref_k))
            changes["retention"] = dataclasses.replace(
                r, tau0_s=tau0,
                source=r.source + "; tau0 from the fitted relaxation onset time")

    bits = ts.get("ber", "bits")
    cyc = ts.get("endurance", "cycles")
    if bits is not None:
        say("binary conditions")
        changes["binary"] = fit_binary(bits, ts.get("ber", "conditions"), cyc,
                                       literature=dm.binary,
                                       faults=ts.get("fault_map", "faults"))
        rep.fitted.append("binary")
    else:
        rep.skipped["binary"] = "no ber run"
    faults = ts.get("fault_map", "faults")
    if faults is not None:
        say("stuck-at faults")
        changes["stuck"] = fit_stuck(faults, dm.stuck)
        rep.fitted.append("stuck")
    else:
        rep.skipped["stuck"] = "no fault_map run"
    rep.skipped["wire"] = "no campaign measures it (literature value kept)"
    prov = Provenance(
        source="fit", store_path=ts.source, data_sha256=ts.sha256,
        run_uids=tuple(ts.run_uids), cimlab_version=__version__,
        created_utc=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        notes="fitted: " + ", ".join(rep.fitted) + "; literature: "
        + ", ".join(f"{k} ({v})" for k, v in rep.skipped.items()),
    )
    for k, v in list(changes.items()):
        if isinstance(v, tuple):
            changes[k] = tuple(drop_degenerate_intervals(e) for e in v)
        else:
            changes[k] = drop_degenerate_intervals(v)
    rep.model = dm.replace(name=name, provenance=prov, **changes)
    return rep


def _timed(reads: pd.DataFrame) -> bool:
    """At least :data:`MIN_TIMED_FRACTION` of ``reads`` have a finite ``time_s``."""
    return "time_s" in reads.columns and bool(np.mean(np.isfinite(
        reads["time_s"].to_numpy(dtype=float))) >= MIN_TIMED_FRACTION)


def _read_pair_lag(reads: pd.DataFrame) -> float:
    """Median time [s] between the two reads of the read-noise fit's pairs (0 if untimed):
    the model's sigma holds the 1/f noise up to that lag, so the relaxation and bake fits
    add only the part beyond it."""
    pairs = read_pairs(_relevel(reads))
    lag = (pairs["t1"] - pairs["t0"]).to_numpy(dtype=float)
    lag = lag[np.isfinite(lag) & (lag > 0)]
    return float(np.median(lag)) if lag.size else 0.0


def _sigma_forms(sigma_forms: Mapping[str, Sequence[str]] | None
                 ) -> dict[str, tuple[str, ...]]:
    """Allowed sigma(g) forms per effect, checked: unknown effects or forms raise."""
    out = {"read_noise": tuple(SIGMA_FORMS), "programming": tuple(SIGMA_FORMS)}
    for effect, forms in (sigma_forms or {}).items():
        if effect not in out:
            raise ValueError(f"sigma_forms: unknown effect {effect!r} (expected one of "
                             f"{', '.join(out)})")
        bad = [f for f in forms if f not in SIGMA_FORMS]
        if bad or not forms:
            raise ValueError(f"sigma_forms[{effect!r}]: expected forms among "
                             f"{', '.join(SIGMA_FORMS)}, got {list(forms)}")
        out[effect] = tuple(forms)
    return out


def fit_store(
    store: Any,
    name: str | None = None,
    include_unfinished: bool = False,
    progress: Callable[[str], None] | None = None,
    select: str = "bic",
    sigma_forms: Mapping[str, Sequence[str]] | None = None,
) -> DeviceModel:
    """Fit a :class:`DeviceModel` to every run in ``store`` (an open Store or a path)."""
    return fit_store_report(store, name, include_unfinished, progress, select,
                            sigma_forms).model


def fit_store_report(
    store: Any,
    name: str | None = None,
    include_unfinished: bool = False,
    progress: Callable[[str], None] | None = None,
    select: str = "bic",
    sigma_forms: Mapping[str, Sequence[str]] | None = None,
) -> FitReport:
    """Like :func:`fit_store`, returning the :class:`FitReport` (intermediate fits too)."""
    if isinstance(store, (str, Path)):
        from cimlab.store import Store

        with Store.open(store, mode="r") as s:
            ts = collect(s, include_unfinished)
            ts.source = str(store)
        return fit_tables(ts, name or Path(store).stem, progress, select, sigma_forms)
    ts = collect(store, include_unfinished)
    return fit_tables(ts, name or Path(ts.source or "store").stem, progress, select,
                      sigma_forms)


__all__ = ["USED_TABLES", "FitReport", "TableSet", "collect", "fit_store",
           "fit_store_report", "fit_tables", "hash_tables", "tables_from_frames"]
