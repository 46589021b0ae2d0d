"""Settings of program-verify (:class:`ProgramVerifyConfig`) and the pulse polarities.

Voltages [V], widths [s], conductances [S]; validated when built (ConfigError).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimlab.errors import ConfigError
from cimlab.params import check, param

#: pulse polarity codes (``direction``): SET raises G, RESET lowers it
SET = 1
RESET = -1


@dataclass(frozen=True)
class ProgramVerifyConfig:
    """Settings of a program-verify run. Voltages [V], widths [s], conductances [S]."""

    scheme: str = param("adaptive", choices=("adaptive", "ispp", "single_shot"),
                        doc="verify scheme")
    tolerance_siemens: float = param(1e-6, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                               doc="accept band half width around the target (NeuRRAM: 1 uS)")
    max_pulses: int = param(40, unit="1", lo=1, hi=100_000, doc="pulse cap per cell")
    max_alternations: int = param(16, unit="1", lo=0, hi=100_000,
                                  doc="SET<->RESET direction changes before a cell fails")
    stuck_after: int = param(3, unit="1", lo=1, hi=1000,
                             doc="strong pulses without response before a cell is called stuck")
    n_reads: int = param(1, unit="1", lo=1, hi=64, doc="verify reads averaged per iteration")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, hi=1.0,
                           doc="pulse width (paper 003: 100 ns; NeuRRAM used 1 us, which on "
                           "the emulated chip gives the same pulse counts at ~13x the energy)")
    v_gate_set: float = param(1.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                              doc="word-line voltage of ISPP SET pulses (sets the compliance)")
    v_gate_reset: float = param(3.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                                doc="word-line voltage of RESET pulses (transistor fully on)")
    v_set_start: float = param(0.8, unit="V", lo=0.0, lo_open=True, hi=10.0,
                               doc="first SET amplitude of the staircase / lowest candidate")
    v_set_max: float = param(2.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                             doc="highest SET amplitude (saturating SET of the adaptive scheme)")
    v_reset_start: float = param(0.8, unit="V", lo=0.0, lo_open=True, hi=10.0,
                                 doc="first RESET amplitude of the staircase / lowest candidate")
    v_reset_max: float = param(2.8, unit="V", lo=0.0, lo_open=True, hi=10.0,
                               doc="highest RESET amplitude (deep RESET)")
    step_v: float = param(0.1, unit="V", lo=0.0, lo_open=True, hi=2.0,
                          doc="staircase step (NeuRRAM: 0.1 V)")
    # adaptive scheme
    v_gate_min: float = param(0.55, unit="V", lo=0.0, hi=10.0,
                              doc="lowest word-line voltage of the adaptive SET candidates")
    v_gate_max: float = param(1.2, unit="V", lo=0.0, hi=10.0,
                              doc="highest word-line voltage of the adaptive SET candidates")
    fine_step_v: float = param(0.05, unit="V", lo=0.0, lo_open=True, hi=1.0,
                               doc="amplitude grid spacing of the adaptive partial pulses")
    gain_rate: float = param(0.5, unit="1", lo=0.0, hi=1.0,
                             doc="per-cell gain update rate (0: no per-cell adaptation)")
    calibration_rounds: int = param(4, unit="1", lo=1, hi=1000,
                                    doc="rounds of each pulse-response sweep (adaptive)")
    calibration_cells: int = param(1024, unit="1", lo=16, doc="cells in the response sweep")
    response_model: str = param(
        "parametric", choices=("tabulated", "parametric"),
        doc="pulse-response model of the adaptive scheme: 'parametric' (default: fraction of "
        "the way to a ceiling / floor, the emulator's own form) or 'tabulated' (measured mean "
        "response per setting and conductance, monotone, no physical form; docs/procedures.md "
        "says why it is not yet the default)")

    def __post_init__(self) -> None:
        check(self)
        if self.v_set_max < self.v_set_start:
            raise ConfigError(None, "v_set_max", f">= v_set_start = {self.v_set_start:g} V",
                              self.v_set_max)
        if self.v_reset_max < self.v_reset_start:
            raise ConfigError(None, "v_reset_max", f">= v_reset_start = {self.v_reset_start:g} V",
                              self.v_reset_max)
        if self.v_gate_max <= self.v_gate_min:
            raise ConfigError(None, "v_gate_max", f"> v_gate_min = {self.v_gate_min:g} V",
                              self.v_gate_max)

    def max_v_set(self) -> float:
        return self.v_set_max

    def max_v_reset(self) -> float:
        return self.v_reset_max

    def max_v_gate(self) -> float:
        return max(self.v_gate_set, self.v_gate_reset, self.v_gate_max)

    def max_v_gate_set(self) -> float:
        """Highest word-line voltage of a SET pulse [V] (sets the largest compliance)."""
        return self.v_gate_set if self.scheme == "ispp" else self.v_gate_max

    def set_amplitudes(self) -> np.ndarray:
        """ISPP SET staircase [V]."""
        return _grid(self.v_set_start, self.v_set_max, self.step_v)

    def reset_amplitudes(self) -> np.ndarray:
        """ISPP RESET staircase [V]."""
        return _grid(self.v_reset_start, self.v_reset_max, self.step_v)


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return np.round(lo + step * np.arange(n), 9)

