"""Fitted values and fit bookkeeping shared by every device-model effect.

An effect (see :mod:`cimlab.models.effects`) keeps its parameters as plain floats, declared
with :func:`cimlab.params.param` (unit, bounds, doc), so the simulator reads
``dm.window.g_max`` as a number. What a fit adds (standard error, 95 % confidence interval,
goodness of fit, the chosen model form, the covariance needed for extrapolation) lives in the
effect's :class:`FitInfo`. :class:`Fitted` is the value type that joins the two, one
parameter at a time, for display and for the JSON export (lmfit's ``Parameter`` is the model:
value, stderr, unit; never silently clamped).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cimlab.params import bounds_of, doc_of, unit_of

#: Two-sided 95 % normal quantile used for Wald intervals (value +- 1.959964 * stderr).
Z95 = 1.959963984540054
#: A positive parameter whose 95 % CI spans more than this ratio (hi / lo: 100 decades,
#: e.g. a retention prefactor that bakes of one duration per temperature do not fix)
#: is shown as not determined instead of as value +- stderr.
UNBOUNDED_CI_RATIO = 1e100


@dataclass(frozen=True)
class Fitted:
    """One parameter as exported: value, standard error, unit, 95 % CI and declared bounds.

    ``stderr`` and ``ci95`` are ``None`` for literature defaults and for values that a fit
    held fixed (the JSON then carries ``null``).
    """

    name: str
    value: float
    unit: str
    stderr: float | None = None
    ci95: tuple[float, float] | None = None
    bounds: tuple[float | None, float | None] = (None, None)
    doc: str = ""

    def covers(self, truth: float) -> bool:
        """True when ``truth`` lies inside the 95 % CI (False when there is none)."""
        return self.ci95 is not None and self.ci95[0] <= truth <= self.ci95[1]

    def text(self) -> str:
        """Readable one-liner, e.g. ``2.31e-06 ± 4.1e-08 S  [2.23e-06, 2.39e-06]``."""
        unit = "" if self.unit in ("", "1") else f" {self.unit}"
        if self.stderr is None and self.ci95 is not None:
            lo, hi = self.ci95
            return f"{self.value:.4g}{unit}  range [{lo:.4g}, {hi:.4g}] (not fitted)"
        if self.stderr is None:
            return f"{self.value:.4g}{unit}  (fixed / literature)"
        lo, hi = self.ci95 if self.ci95 is not None else (math.nan, math.nan)
        if self.ci95 is not None and lo > 0 and hi > 0 and hi / lo > UNBOUNDED_CI_RATIO:
            return (f"{self.value:.4g}{unit}  95% CI [{lo:.3g}, {hi:.3g}]: not determined by "
                    "these data")
        return f"{self.value:.4g} ± {self.stderr:.2g}{unit}  95% CI [{lo:.4g}, {hi:.4g}]"


@dataclass(frozen=True)
class FitInfo:
    """How an effect was fitted: method, sample size, quality, form selection, uncertainties.

    ``stderr`` and ``ci95`` map parameter names of the effect to their standard error and
    95 % confidence interval. ``candidates`` maps each model form tried to its criteria
    (``{"aic": ..., "bic": ..., "k": n_params}``); ``form`` is the one chosen (lowest BIC).
    ``gof`` holds goodness-of-fit figures (``r2``, ``rmse``, ``chi2_red``, ``max_rel_err``,
    ...). ``covariance`` (``{"names": [...], "matrix": [[...]]}``) is kept where a consumer
    needs correlated uncertainty (retention extrapolation propagates it).
    """

    method: str
    n: int
    form: str = ""
    aic: float | None = None
    bic: float | None = None
    gof: dict[str, float] = field(default_factory=dict)
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    covariance: dict[str, Any] | None = None
    notes: str = ""


def wald_ci(value: float, stderr: float) -> tuple[float, float]:
    """Symmetric 95 % Wald interval ``value +- 1.96 stderr``."""
    return (value - Z95 * stderr, value + Z95 * stderr)


def fitted_of(effect: Any, name: str) -> Fitted:
    """The :class:`Fitted` view of field ``name`` of a frozen-dataclass effect."""
    fit: FitInfo | None = getattr(effect, "fit", None)
    stderr = fit.stderr.get(name) if fit is not None else None
    ci = fit.ci95.get(name) if fit is not None else None
    return Fitted(
        name=name,
        value=getattr(effect, name),
        unit=unit_of(effect, name),
        stderr=stderr,
        ci95=tuple(ci) if ci is not None else None,
        bounds=bounds_of(effect, name),
        doc=doc_of(effect, name),
    )


def numeric_fields(effect: Any) -> list[str]:
    """Names of the effect's numeric (float/int) parameter fields, in declaration order."""
    out = []
    for f in dataclasses.fields(effect):
        if f.name == "fit" or not f.metadata:
            continue
        v = getattr(effect, f.name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(f.name)
    return out


def text_fields(effect: Any) -> list[str]:
    """Names of the effect's string settings (model form, mode, name), in declaration order."""
    return [
        f.name
        for f in dataclasses.fields(effect)
        if f.name != "fit" and f.metadata and isinstance(getattr(effect, f.name), str)
    ]
