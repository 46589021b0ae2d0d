"""cimlab.physics: the emulated ReRAM chip's ground truth (NumPy + SciPy, seeded Generators).

::

    from cimlab.physics import ReRAMChip, load_profile
    chip = ReRAMChip(load_profile("default"), seed=1)
    e = chip.pulse(cells, "set", v_pulse=1.5, v_gate=chip.profile.transistor.v_gate_for_icc(10e-6),
                   width_s=1e-6, now_s=0.0)
    g = chip.read(cells, now_s=1e-3)

Modules: profile (parameters, TOML profiles), chip (state, pulse, read, mvm), relaxation
(lazy log-time relaxation process), retention (Arrhenius, equivalent time), binary
(paper 003 programming conditions, BER), faults (stuck-at, wear-out), crossbar (exact IR drop),
truth (ground-truth accessors). Model and sources: docs/physics.md.
"""

from cimlab.physics.chip import ReRAMChip
from cimlab.physics.profile import BUNDLED_PROFILES, ChipProfile, load_profile
from cimlab.physics.truth import ChipTruth

__all__ = ["BUNDLED_PROFILES", "ChipProfile", "ChipTruth", "ReRAMChip", "load_profile"]
