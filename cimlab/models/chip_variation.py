"""Chip-to-chip variation from several stores (one chip each), next to the cell-to-cell
variation that each chip's own fit describes.

Each store is fitted on its own (:func:`cimlab.models.fit.store.fit_store`), giving one
:class:`DeviceModel` per chip whose parameters already describe the cell-to-cell statistics of
that chip (programming-error sigma, read-noise sigma(g), stuck fractions...). For every
parameter fitted on every chip with the same model form, the per-chip estimates ``theta_k``
(standard errors ``se_k``) are combined by the method of moments of a one-way random-effects
model ``theta_k = mu + b_k + e_k``, ``b_k ~ N(0, tau^2)`` (chip to chip), ``e_k ~ N(0, se_k^2)``
(each chip's estimation error from its finite number of cells):

* ``mean``: the average of ``theta_k``, with a Student-t 95 % interval;
* ``sd_observed``: the sample standard deviation of ``theta_k`` (``k - 1`` degrees of freedom);
* ``sd_between`` (``tau``): ``sqrt(max(0, sd_observed^2 - mean(se_k^2)))``, the chip-to-chip
  spread with the estimation noise removed; 95 % interval from the chi-square interval of
  ``sd_observed`` (:func:`cimlab.stats.sigma_interval`) with ``mean(se_k^2)`` subtracted,
  floored at 0 (a lower bound of 0 means no chip-to-chip variation is resolved).

:meth:`ChipVariation.sample_chip` draws a chip for the simulator: each varying parameter from
``N(mean, sd_between)``, redrawn (not clipped) while outside the parameter's declared bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.models.device_model import DeviceModel
from cimlab.models.params import fitted_of, numeric_fields
from cimlab.params import bounds_of
from cimlab.stats import sigma_interval

#: DeviceModel fields that hold one effect each (programming_other is a tuple: not combined)
EFFECTS = ("window", "programming", "read_noise", "relaxation", "retention", "stuck", "wire")
#: redraws of one parameter outside its bounds before sample_chip gives up
MAX_REDRAWS = 1000


@dataclass(frozen=True)
class ParameterVariation:
    """One parameter across chips (module docstring for the estimators)."""

    effect: str
    name: str
    unit: str
    per_chip: tuple[float, ...]
    per_chip_stderr: tuple[float, ...]
    mean: float
    mean_ci95: tuple[float, float]
    sd_observed: float
    sd_between: float
    sd_between_ci95: tuple[float, float]

    @property
    def n_chips(self) -> int:
        return len(self.per_chip)

    @property
    def se_within(self) -> float:
        """RMS of the per-chip standard errors (the estimation noise of one chip's value)."""
        return float(np.sqrt(np.mean(np.square(self.per_chip_stderr))))


def parameter_variation(effect: str, name: str, unit: str, values: Sequence[float],
                        stderrs: Sequence[float]) -> ParameterVariation:
    """The random-effects summary of one parameter's per-chip estimates (>= 2 chips)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=float)
    se = np.asarray(stderrs, dtype=float)
    k = v.size
    if k < 2 or se.shape != v.shape:
        raise ConfigError(None, "stores", "at least 2 chips with a value and stderr each", k)
    mean = float(v.mean())
    sd_obs = float(v.std(ddof=1))
    half = float(student_t.ppf(0.975, k - 1)) * sd_obs / np.sqrt(k)
    noise = float(np.mean(se**2))
    lo, hi = sigma_interval(sd_obs, k)
    tau = float(np.sqrt(max(0.0, sd_obs**2 - noise)))
    tau_ci = (float(np.sqrt(max(0.0, float(lo) ** 2 - noise))),
              float(np.sqrt(max(0.0, float(hi) ** 2 - noise))))
    return ParameterVariation(effect, name, unit, tuple(v.tolist()), tuple(se.tolist()), mean,
                              (mean - half, mean + half), sd_obs, tau, tau_ci)


@dataclass(frozen=True)
class ChipVariation:
    """Chip-to-chip variation of every parameter fitted on all chips (module docstring)."""

    chips: tuple[str, ...]
    parameters: tuple[ParameterVariation, ...]
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def get(self, effect: str, name: str) -> ParameterVariation:
        for p in self.parameters:
            if (p.effect, p.name) == (effect, name):
                return p
        raise KeyError(f"{effect}.{name}")

    def table(self) -> str:
        """Readable summary: one line per parameter."""
        head = (f"{'parameter':28s} {'unit':>5s} {'mean':>11s} {'sd chip-to-chip':>16s} "
                f"{'95% CI':>23s} {'se per chip':>11s}")
        lines = [f"{len(self.chips)} chips: {', '.join(self.chips)}", head, "-" * len(head)]
        for p in self.parameters:
            lo, hi = p.sd_between_ci95
            lines.append(f"{p.effect + '.' + p.name:28s} {p.unit:>5s} {p.mean:11.4g} "
                         f"{p.sd_between:16.3g} {f'[{lo:.3g}, {hi:.3g}]':>23s} "
                         f"{p.se_within:11.3g}")
        if self.notes:
            lines.append("common forms: " + "; ".join(self.notes))
        if self.skipped:
            lines.append("not combined: " + "; ".join(self.skipped))
        return "\n".join(lines)

    def sample_chip(self, base: DeviceModel, rng: np.random.Generator) -> DeviceModel:
        """``base`` with each parameter of a resolved chip-to-chip spread (``sd_between >
        0``) drawn from ``N(mean, sd_between)`` (redrawn while outside its bounds); the other
        parameters keep ``base``'s values. One call = one chip."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator")
        changes: dict[str, dict[str, float]] = {}
        for p in self.parameters:
            if p.sd_between <= 0.0:
                continue
            effect = getattr(base, p.effect)
            lo, hi = bounds_of(effect, p.name)
            for _ in range(MAX_REDRAWS):
                x = float(rng.normal(p.mean, p.sd_between))
                if (lo is None or x >= lo) and (hi is None or x <= hi):
                    break
            else:
                raise ConfigError(None, f"{p.effect}.{p.name}", f"draws within [{lo}, {hi}]",
                                  f"N({p.mean:.4g}, {p.sd_between:.4g})")
            changes.setdefault(p.effect, {})[p.name] = x
        out = {name: dataclasses.replace(getattr(base, name), **vals)
               for name, vals in changes.items()}
        return dataclasses.replace(base, **out) if out else base


def chip_label(store: Any) -> str:
    """The chip identity recorded in a store's runs (``run.meta["chip"]["chip"]``), else the
    store file's stem."""
    from cimlab.store import Store

    with Store.open(store, "r") as s:
        for uid in s.uids:
            chip = s.run(uid).meta.get("chip")
            if isinstance(chip, dict) and chip.get("chip"):
                return str(chip["chip"])
    return Path(store).stem if Path(store).stem != "store" else Path(store).parent.name


def variation_from_models(models: Sequence[DeviceModel], chips: Sequence[str]
                          ) -> ChipVariation:  # fmt: skip
    """Combine per-chip fitted models (same order as ``chips``)."""
    if len(models) < 2 or len(models) != len(chips):
        raise ConfigError(None, "stores", "at least 2 stores (one per chip)", len(models))
    params, skipped = [], []
    for effect in EFFECTS:
        effects = [getattr(m, effect) for m in models]
        if any(getattr(e, "fit", None) is None for e in effects):
            continue  # not fitted on every chip (literature value somewhere)
        forms = {getattr(e, "form", "") for e in effects}
        if len(forms) > 1:
            skipped.append(f"{effect} (model forms differ between chips: {sorted(forms)})")
            continue
        for name in numeric_fields(effects[0]):
            fits = [fitted_of(e, name) for e in effects]
            if any(f.stderr is None for f in fits):
                continue  # held fixed on some chip
            params.append(parameter_variation(effect, name, fits[0].unit,
                                              [f.value for f in fits],
                                              [f.stderr for f in fits]))
    return ChipVariation(tuple(chips), tuple(params), tuple(skipped))


#: Effects whose sigma(g) form BIC picks per chip; when the chips' picks differ the chips
#: are refitted with one common form (:func:`common_sigma_forms`) so that they combine.
SIGMA_EFFECTS = ("read_noise", "programming")


def common_sigma_forms(models: Sequence[DeviceModel]) -> dict[str, str]:
    """Per effect of :data:`SIGMA_EFFECTS` whose fitted form differs between ``models``: the
    form with the lowest BIC summed over the chips (among forms fitted and valid on every
    chip), i.e. the one form the whole set prefers. Effects already agreeing are absent."""
    out = {}
    for effect in SIGMA_EFFECTS:
        fits = [getattr(getattr(m, effect), "fit", None) for m in models]
        if any(f is None for f in fits):
            continue
        if len({getattr(getattr(m, effect), "form", "") for m in models}) < 2:
            continue
        common = set.intersection(*[
            {k for k, c in f.candidates.items() if c.get("valid", 1.0) and "bic" in c}
            for f in fits])
        if common:
            out[effect] = min(sorted(common),
                              key=lambda k: sum(f.candidates[k]["bic"] for f in fits))
    return out


def fit_chip_variation(stores: Sequence[str | Path], *,
                       progress: Callable[[str], None] | None = None) -> ChipVariation:
    """Fit each store (one chip each) and combine the chips (module docstring). Where BIC
    picked different sigma(g) forms on different chips (a close call on one chip flips it),
    the chips that differ are refitted with the form the set prefers
    (:func:`common_sigma_forms`); the table says so."""
    from cimlab.models.fit.store import fit_store

    stores = [Path(s) for s in stores]
    if len(stores) < 2:
        raise ConfigError(None, "stores", "at least 2 stores (one per chip)", len(stores))
    models, chips = [], []
    for s in stores:
        if progress is not None:
            progress(f"fitting {s}")
        models.append(fit_store(s))
        chips.append(chip_label(s))
    common = common_sigma_forms(models)
    notes = []
    if common:
        forced = {effect: (form,) for effect, form in common.items()}
        redo = [i for i, m in enumerate(models)
                if any(getattr(m, e).form != f for e, f in common.items())]
        for i in redo:
            if progress is not None:
                progress(f"refitting {stores[i]} with the common form")
            models[i] = fit_store(stores[i], sigma_forms=forced)
        notes = [f"{effect}: form '{form}' on every chip (lowest BIC summed over the chips; "
                 f"refitted: {', '.join(chips[i] for i in redo)})"
                 for effect, form in common.items()]
    cv = variation_from_models(models, chips)
    return dataclasses.replace(cv, notes=tuple(notes)) if notes else cv
