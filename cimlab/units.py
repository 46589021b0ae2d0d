"""Unit constants and unit naming shared by every layer (layer 0, no imports).

Temperatures are kelvin inside cimlab; files, the CLI and printed tables may use degrees
Celsius in fields named ``*_c``. Convert with :data:`KELVIN_OFFSET` only.
"""

from __future__ import annotations

#: 0 degC in kelvin [K]: ``T[K] = T[degC] + KELVIN_OFFSET``, exact by the definition of the
#: Celsius scale (BIPM, The International System of Units, 9th ed., 2019, section 2.3.1).
KELVIN_OFFSET = 273.15

#: Boltzmann constant [eV/K], exact since the 2019 SI redefinition (CODATA 2018): the one
#: value of every Arrhenius factor (chip physics, device model, settle bakes).
K_B_EV = 8.617333262e-5


def c_to_k(temp_c: float) -> float:
    """Degrees Celsius to kelvin [K]."""
    return temp_c + KELVIN_OFFSET


def k_to_c(temp_k: float) -> float:
    """Kelvin to degrees Celsius [degC]."""
    return temp_k - KELVIN_OFFSET


# ---------------------------------------------------------------------- conductance suffix
#: Suffix of a conductance [S] in names (configs, public API, store columns, model files).
#: Until store format 1 / model schema 4 conductances ended in ``_s``, which also means
#: seconds; the names below are the conductances that were spelled that way.
SIEMENS_SUFFIX = "_siemens"
#: Stems (name without the suffix) of the conductances once spelled ``<stem>_s``.
_FORMER_S_STEMS = frozenset("""
    band best_threshold ceiling error error_p99_abs error_rms final_error_rms g g0
    g_after_reset g_after_set g_b g_b_pre g_final g_first g_hrs g_level g_lrs g_max g_mean
    g_min g_off g_on g_pre g_read g_readback g_ref g_reset g_set g_split g_std g_true
    g_verify gmax hrs_median level_step lrs_median mean mean_error mean_g mean_g_hrs
    mean_g_lrs mean_rmse mean_shift median median_g median_window min_window p10_window
    reset_floor rmse shift shift_emulated shift_techc sigma sigma_emulated sigma_hi sigma_lo
    sigma_plain sigma_pooled sigma_raw sigma_relax sigma_robust sigma_shift sigma_techc
    target targets threshold tol tolerance window
""".split())


def renamed_conductance(name: str) -> str:
    """The current name of ``name``: ``<stem>_s`` -> ``<stem>_siemens`` for a former
    conductance name (also inside a longer key, e.g. ``T0_measured_sigma_s`` or
    ``adaptive_error_rms_s``, where a former stem ends the key after an underscore); any other
    name unchanged. Used by the store and model-file migrations and by the error that names
    an old key in a plan file."""
    if not name.endswith("_s"):
        return name
    stem = name[:-2]
    parts = stem.split("_")
    for i in range(len(parts)):
        if "_".join(parts[i:]) in _FORMER_S_STEMS:
            return stem + SIEMENS_SUFFIX
    return name
