"""Readable text of a device model (what ``cimlab model show`` prints)."""

from __future__ import annotations

from typing import Any

from cimlab.models.params import fitted_of, numeric_fields, text_fields
from cimlab.units import KELVIN_OFFSET


def _effect_lines(title: str, effect: Any) -> list[str]:
    lines = [f"[{title}]  source: {effect.source}"]
    settings = [f"{n}={getattr(effect, n)}" for n in text_fields(effect) if n != "source"]
    if settings:
        lines.append("  " + ", ".join(settings))
    fit = effect.fit
    gof = fit.gof if fit is not None else {}
    for name in numeric_fields(effect):
        f = fitted_of(effect, name)
        text = f.text()
        if gof.get(f"{name}_prior"):
            text += f"  <- {_prior_reason(fit, name)}"
        if gof.get(f"{name}_lower_bound"):
            unit = "" if f.unit in ("", "1") else f" {f.unit}"
            text = (f"> {f.value:.4g}{unit} (lower bound: "
                    f"{_lower_bound_reason(gof, name)})")
        lines.append(f"  {name:<18} {text}")
    if fit is not None:
        head = f"  fit: {fit.method}, n={fit.n}"
        if fit.form:
            head += f", form={fit.form}"
        if fit.aic is not None:
            head += f", AIC={fit.aic:.1f}"
        if fit.bic is not None:
            head += f", BIC={fit.bic:.1f}"
        lines.append(head)
        per_t = {k: v for k, v in fit.gof.items() if _is_per_temperature(k)}
        rest = {k: v for k, v in fit.gof.items() if k not in per_t}
        if rest:
            lines.append("  quality: " + ", ".join(f"{k}={v:.4g}" for k, v in rest.items()))
        if per_t:
            lines.extend(temperature_table(fit.gof))
        if fit.candidates:
            cands = ", ".join(
                f"{form} (BIC {c.get('bic', float('nan')):.1f})"
                for form, c in fit.candidates.items()
            )
            lines.append(f"  forms tried: {cands}")
        if fit.notes:
            lines.append(f"  notes: {fit.notes}")
    return lines


def _is_per_temperature(key: str) -> bool:
    head = key.split("_", 1)[0]
    return len(head) > 1 and head[0] == "T" and head[1:].isdigit()


def temperature_table(gof: dict) -> list[str]:
    """The retention fit's per-temperature check (gof keys ``T<i>_<figure>``) as a table:
    measured vs predicted mean shift and spread, errors in sigmas / percent (medians over the
    levels), and whether the temperature left the Arrhenius law (excluded from Ea)."""
    n = 0
    while f"T{n}_temp_k" in gof:
        n += 1
    lines = ["  per bake temperature (medians over levels; mean error in measured sigmas):",
             f"    {'T [C]':>6} {'levels':>6} {'mean meas':>10} {'mean pred':>10} "
             f"{'sig meas':>9} {'sig pred':>9} {'|dmean|/sig':>11} {'sig err':>8} "
             f"{'in tol':>6}  status"]
    for i in range(n):
        g = {k[len(f"T{i}_"):]: v for k, v in gof.items() if k.startswith(f"T{i}_")}
        status = "EXCLUDED: off the Arrhenius law" if g.get("excluded") else "fitted"
        lines.append(
            f"    {g['temp_k'] - KELVIN_OFFSET:>6.0f} {g.get('n_groups', 0):>6.0f} "
            f"{g['measured_mean_siemens'] * 1e6:>8.3g}µS "
            f"{g['predicted_mean_siemens'] * 1e6:>8.3g}µS "
            f"{g['measured_sigma_siemens'] * 1e6:>7.3g}µS "
            f"{g['predicted_sigma_siemens'] * 1e6:>7.3g}µS "
            f"{g['mean_err_sigma']:>11.2f} {100 * g['sigma_rel_err']:>7.0f}% "
            f"{100 * g.get('within', 0):>5.0f}%  {status}"
        )
    return lines


def _prior_reason(fit: Any, name: str) -> str:
    """The fit notes' reason for ``name`` being a prior (``"<name>: prior (...)"``)."""
    for part in fit.notes.split("; "):
        if part.startswith(f"{name}: prior"):
            return part[len(name) + 2:]
    return "not fitted"


def _lower_bound_reason(gof: dict, name: str) -> str:
    failed = gof.get(f"{name.split('_')[0]}_failed")
    if failed is not None and failed == 0:
        return "no failures in the measured cycles"
    if failed is not None:
        return f"only {failed:.0f} failures in the measured cycles"
    return "not reached in the measurement"


def describe(dm: Any) -> str:
    """Multi-line description of ``dm``: parameters with stderr and CI, fit quality, provenance."""
    p = dm.provenance
    out = [f"DeviceModel {dm.name!r}  ({p.source}; cimlab {p.cimlab_version or '?'})"]
    if p.store_path:
        out.append(f"  store: {p.store_path}")
    if p.data_sha256:
        out.append(f"  data sha256: {p.data_sha256}")
    if p.run_uids:
        out.append(f"  runs: {', '.join(p.run_uids)}")
    if p.created_utc:
        out.append(f"  created: {p.created_utc}")
    if p.notes:
        out.append(f"  notes: {p.notes}")
    for name in ("window", "programming", "read_noise", "relaxation", "retention", "stuck", "wire"):
        out.extend(_effect_lines(name, getattr(dm, name)))
    for i, pe in enumerate(dm.programming_other):
        out.extend(_effect_lines(f"programming_other[{i}]", pe))
    out.append(f"[binary]  source: {dm.binary.source}")
    for c in dm.binary.conditions:
        out.extend("  " + line for line in _effect_lines(f"condition {c.name}", c))
    return "\n".join(out)
