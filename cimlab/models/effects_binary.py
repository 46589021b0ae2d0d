"""Binary operation of the cells: LRS/HRS lognormals, bit error rates, paper 003 conditions.

:class:`BinaryCondition` is one programming condition (compliance, RESET amplitude, width) with
its lognormal LRS/HRS conductance distributions [S], measured and modelled BER, energy and
endurance; :func:`paper003_conditions` builds the three conditions of paper 003, Table I;
:class:`BinaryStates` holds the conditions of a model and samples bit errors. Part of
:mod:`cimlab.models.effects`, which re-exports every name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cimlab.errors import ConfigError
from cimlab.models._array import rand
from cimlab.models.params import FitInfo
from cimlab.params import check, param


def _phi(z: float) -> float:
    """Standard normal CDF (accurate in the far tail, via erfc)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass(frozen=True)
class BinaryCondition:
    """One binary programming condition: LRS/HRS lognormal distributions, BER, energy, endurance.

    ``ln G`` of a cell in the low-resistance state (bit "0" in paper 003) is normal with median
    ``lrs_median_siemens`` and standard deviation ``lrs_sigma_ln``; likewise for HRS. 1T1R reads
    compare one cell with ``threshold_siemens``; 2T2R reads compare a cell with its complement.
    ``ber_1t1r`` / ``ber_2t2r`` are the measured (or tabulated) error rates;
    :meth:`model_ber_1t1r` / :meth:`model_ber_2t2r` are what the distributions predict.
    """

    name: str = param("strong", doc="condition label")
    icc_a: float = param(55e-6, unit="A", lo=0.0, lo_open=True, hi=0.1, doc="SET compliance")
    v_reset: float = param(2.5, unit="V", lo=0.0, lo_open=True, hi=10.0, doc="RESET amplitude")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, hi=1.0, doc="pulse width")
    lrs_median_siemens: float = param(
        1.375e-4, unit="S", lo=0.0, lo_open=True, hi=1.0, doc="LRS median"
    )
    lrs_sigma_ln: float = param(0.25, unit="1", lo=0.0, lo_open=True, hi=5.0, doc="LRS std of ln G")
    hrs_median_siemens: float = param(
        1e-5, unit="S", lo=0.0, lo_open=True, hi=1.0, doc="HRS median G"
    )
    hrs_sigma_ln: float = param(0.7, unit="1", lo=0.0, lo_open=True, hi=5.0, doc="HRS std of ln G")
    threshold_siemens: float = param(
        3.7e-5, unit="S", lo=0.0, lo_open=True, hi=1.0, doc="1T1R reference"
    )
    ber_1t1r: float = param(9.7e-5, unit="1", lo=0.0, hi=1.0, doc="bit error rate, 1T1R read")
    ber_2t2r: float = param(1e-6, unit="1", lo=0.0, hi=1.0, doc="bit error rate, 2T2R read")
    energy_per_bit_j: float = param(12.5e-12, unit="J", lo=0.0, hi=1e-6, doc="programming energy")
    endurance_cycles: float = param(1e4, unit="1", lo=1.0, hi=1e15, doc="cycles before failure")
    source: str = param("paper 003 Table I", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        if self.lrs_median_siemens <= self.hrs_median_siemens:
            raise ConfigError(
                None,
                "lrs_median_siemens",
                f"a value above hrs_median_siemens = {self.hrs_median_siemens:g} S",
                self.lrs_median_siemens,
            )

    def model_ber_1t1r(self, threshold_siemens: float | None = None) -> float:
        """BER of a 1T1R read at ``threshold_siemens`` (default: the stored one), equal 0/1 bits."""
        thr = math.log(self.threshold_siemens if threshold_siemens is None else threshold_siemens)
        p_lrs_low = _phi((thr - math.log(self.lrs_median_siemens)) / self.lrs_sigma_ln)
        p_hrs_high = _phi(-(thr - math.log(self.hrs_median_siemens)) / self.hrs_sigma_ln)
        return 0.5 * (p_lrs_low + p_hrs_high)

    def model_ber_2t2r(self) -> float:
        """BER of a 2T2R (differential) read: P(G_LRS < G_HRS) for independent lognormals."""
        d = math.log(self.lrs_median_siemens) - math.log(self.hrs_median_siemens)
        return _phi(-d / math.hypot(self.lrs_sigma_ln, self.hrs_sigma_ln))

    def best_threshold_siemens(self) -> float:
        """Threshold [S] minimising the 1T1R BER for these distributions."""
        from scipy.optimize import minimize_scalar

        lo, hi = math.log(self.hrs_median_siemens), math.log(self.lrs_median_siemens)
        res = minimize_scalar(
            lambda u: self.model_ber_1t1r(math.exp(u)), bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-6},
        )
        return float(math.exp(res.x))

    def ber(self, structure: str = "1T1R") -> float:
        """Stored bit error rate for ``structure`` ("1T1R" or "2T2R")."""
        if structure == "1T1R":
            return self.ber_1t1r
        if structure == "2T2R":
            return self.ber_2t2r
        raise ValueError(f"structure must be '1T1R' or '2T2R', got {structure!r}")


def _condition_for_ber(
    name: str, icc_a: float, v_reset: float, ber: float, lrs_sigma_ln: float,
    hrs_sigma_ln: float, energy_per_bit_j: float, endurance: float, v_c: float = 0.5,
) -> BinaryCondition:
    """Literature condition: LRS median from ``R_LRS = v_c / I_cc`` (filament scaling of
    RRAM, Ielmini IEEE TED 58, 4309 (2011); v_c = 0.5 V assumed); HRS median solved so that
    the 1T1R BER at the best threshold equals the tabulated ``ber`` of paper 003 Table I;
    2T2R BER from the model."""
    from scipy.optimize import brentq

    g_lrs = icc_a / v_c

    def make(ln_ratio: float) -> BinaryCondition:
        g_hrs = g_lrs * math.exp(-ln_ratio)
        base = BinaryCondition(
            name=name, icc_a=icc_a, v_reset=v_reset, width_s=100e-9, lrs_median_siemens=g_lrs,
            lrs_sigma_ln=lrs_sigma_ln, hrs_median_siemens=g_hrs, hrs_sigma_ln=hrs_sigma_ln,
            threshold_siemens=math.sqrt(g_lrs * g_hrs), ber_1t1r=ber, ber_2t2r=ber,
            energy_per_bit_j=energy_per_bit_j, endurance_cycles=endurance,
        )
        return base

    def excess(ln_ratio: float) -> float:
        c = make(ln_ratio)
        return math.log(c.model_ber_1t1r(c.best_threshold_siemens())) - math.log(ber)

    ln_ratio = brentq(excess, 0.05, 12.0, xtol=1e-6)
    c = make(ln_ratio)
    thr = c.best_threshold_siemens()
    return BinaryCondition(
        name=name,
        icc_a=icc_a,
        v_reset=v_reset,
        width_s=100e-9,
        lrs_median_siemens=c.lrs_median_siemens,
        lrs_sigma_ln=lrs_sigma_ln,
        hrs_median_siemens=c.hrs_median_siemens,
        hrs_sigma_ln=hrs_sigma_ln,
        threshold_siemens=thr,
        ber_1t1r=ber,
        ber_2t2r=c.model_ber_2t2r(),
        energy_per_bit_j=energy_per_bit_j,
        endurance_cycles=endurance,
        source="paper 003 Table I (icc, v_reset, 100 ns, BER, energy = mean of SET/RESET, "
        "cyclability); LRS median = icc / 0.5 V (Ielmini 2011); HRS median solved for the 1T1R BER",
    )


def paper003_conditions() -> tuple[BinaryCondition, ...]:
    """The three programming conditions of paper 003 (Hirtzlin et al.), Table I.

    very strong: 600 uA / 2.5 V, BER < 1e-6 (1e-6 used), 120/150 pJ, 100 cycles;
    strong: 55 uA / 2.5 V, BER 9.7e-5, 11/14 pJ, > 1e4 cycles;
    weak: 20 uA / 1.5 V, BER 3.3e-2, 4/5 pJ, > 1e6 cycles.
    Log-normal widths (LRS narrower than HRS, both widening as the compliance drops) are
    assumptions in the range of kilobit HfO2 arrays (Grossi et al., IEDM 2016, ref. [16]).
    """
    return (
        _condition_for_ber("very_strong", 600e-6, 2.5, 1e-6, 0.10, 0.50, 135e-12, 100.0),
        _condition_for_ber("strong", 55e-6, 2.5, 9.7e-5, 0.20, 0.60, 12.5e-12, 1e4),
        _condition_for_ber("weak", 20e-6, 1.5, 3.3e-2, 0.30, 0.80, 4.5e-12, 1e6),
    )


@dataclass(frozen=True)
class BinaryStates:
    """Binary (1 bit per cell or per pair) operation under each measured programming condition."""

    conditions: tuple[BinaryCondition, ...] = field(default_factory=tuple)
    source: str = param("paper 003 Table I", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ConfigError(None, "conditions", "unique condition names", names)

    def condition(self, name: str) -> BinaryCondition:
        """The condition called ``name`` (KeyError listing the known names otherwise)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"no binary condition {name!r}; known: {[c.name for c in self.conditions]}")

    def sample_bit_errors(
        self, name: str, shape: tuple[int, ...], generator: Any, structure: str = "1T1R"
    ):
        """Boolean mask of flipped bits (True = error) with the condition's BER."""
        p = self.condition(name).ber(structure)
        u = rand(tuple(shape), generator)
        return u < p
