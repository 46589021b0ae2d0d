"""Configuration of the analog (compute-in-memory) simulator: :class:`AnalogConfig`.

One frozen dataclass says how a network is mapped onto ReRAM tiles and which non-idealities
are simulated. Every switch is independent, so a test (or a paper-000 style study) can turn
one effect on at a time; :meth:`AnalogConfig.ideal` turns everything off (the converted
network then reproduces the plain network to float precision).

Sources of the defaults:

* tiles of 256 x 64 cells, partial sums digitised by 8-bit ADCs and added digitally,
  signed weights as two cells (paper 001, Wang/Park/Lu);
* conductance window, programming error, read noise, relaxation, retention, stuck-at faults
  and wire resistance from the :class:`~cimlab.models.DeviceModel` (paper 000 numbers for the
  literature default, or a fit of the user's chip);
* bias folded into the array as an extra row (paper 002);
* bit slicing over cells of ``levels`` levels (paper 004: 4-bit cells, 2 columns per weight);
* binarized mode with the bit error rate of a programming condition (paper 003).

With a 1/f read-noise spectrum (``dm.read_noise_spectrum.a_peak > 0``) the read noise splits
at ``1 / eval_duration_s`` into a per-cell offset frozen during an evaluation and a part that
varies from forward to forward (:mod:`cimlab.sim.flicker`). ``eval_duration_s = 1 s``: one
pass over a 10,000-sample test set at ~100 us per inference (a few layers of us-scale array
reads and conversions) takes about a second; 1 Hz is also inside the band the techA spectrum
was fitted on (0.15-160 Hz), so both parts are integrals over measured frequencies.

IR drop is off by default: at the device model's 2 ohm per segment (paper 004) a full 256 x 64
tile of 2-40 uS cells loses up to ~90 % of its column current (measured against
cimlab.physics' nodal solution, tests/sim/test_irdrop.py), which no uncompensated network
survives; ``ir_drop=True`` simulates it (first-order correction, irdrop.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cimlab.errors import ConfigError
from cimlab.models import DeviceModel
from cimlab.params import check, param

#: Read-noise models (see docs/simulator.md, "Read noise"):
#: ``"weight"``: one draw per cell per forward call, shared by the samples of the batch;
#: ``"output"``: output-referred, independent for every sample (exact second moment).
READ_NOISE_MODES = ("weight", "output")
ADC_RANGE_MODES = ("max", "calibrated")
STRUCTURES = ("1T1R", "2T2R")


@dataclass(frozen=True)
class AnalogConfig:
    """How a network runs on ReRAM tiles; one switch per non-ideality.

    ``device`` is a :class:`cimlab.models.DeviceModel` (``None``: ``DeviceModel.default()``,
    resolved by :func:`cimlab.sim.convert`).
    """

    device: DeviceModel | None = None
    mode: str = param("analog", choices=("analog", "binary"), doc="multi-level or +-1 weights")
    tile: tuple[int, int] | None = param(
        (256, 64), unit="1", lo=1, doc="physical cells per tile (rows, columns); None: one array"
    )
    adc_bits: int | None = param(8, unit="1", lo=1, hi=24, doc="ADC resolution; None: no ADC")
    adc_range: str = param(
        "max", choices=ADC_RANGE_MODES,
        doc="per-tile ADC full scale: worst case from the weights, or from calibrate()",
    )  # fmt: skip
    dac_bits: int | None = param(8, unit="1", lo=1, hi=24, doc="DAC resolution; None: no DAC")
    levels: int | str | None = "device"
    slices: int = param(1, unit="1", lo=1, hi=8, doc="cells (column pairs) per weight")
    wmax: float | None = param(
        None, unit="1", lo=0.0, lo_open=True,
        doc="weight mapped to the full window; None: max |w| of each layer",
    )  # fmt: skip
    programming_error: bool = True
    read_noise: str | None = "weight"
    eval_duration_s: float = param(
        1.0, unit="s", lo=0.0, lo_open=True,
        doc="duration of one evaluation: 1/f read noise slower than 1/T is frozen during it",
    )  # fmt: skip
    stuck: bool = True
    ir_drop: bool = False
    binary_condition: str = param("strong", doc="programming condition name (binary mode)")
    binary_structure: str = param("2T2R", choices=STRUCTURES, doc="cells per binary weight")

    def __post_init__(self):
        check(self)
        if self.tile is not None and len(self.tile) != 2:
            raise ConfigError(None, "tile", "(rows, columns) or None", self.tile)
        if self.levels is not None and self.levels != "device":
            if isinstance(self.levels, bool) or not isinstance(self.levels, int):
                raise ConfigError(None, "levels", "'device', None or an integer >= 2", self.levels)
            if self.levels < 2:
                raise ConfigError(None, "levels", "'device', None or an integer >= 2", self.levels)
        if self.slices > 1 and self.levels is None:
            raise ConfigError(None, "slices", "1 when levels is None (continuous cells)",
                              self.slices)  # fmt: skip
        if self.read_noise is not None and self.read_noise not in READ_NOISE_MODES:
            raise ConfigError(None, "read_noise", "None, 'weight' or 'output'", self.read_noise)
        if self.tile is not None and self.tile[1] < 2 * self.slices:
            raise ConfigError(
                None, "tile", f"at least {2 * self.slices} columns (a differential pair per "
                "slice)", self.tile,
            )  # fmt: skip

    # ------------------------------------------------------------------ constructors
    @classmethod
    def ideal(cls, device: DeviceModel | None = None, **changes: Any) -> AnalogConfig:
        """Every non-ideality off: continuous levels, no ADC/DAC, no noise, faults, IR drop."""
        base = cls(
            device=device, tile=None, adc_bits=None, dac_bits=None, levels=None,
            programming_error=False, read_noise=None, stuck=False, ir_drop=False,
        )  # fmt: skip
        return dataclasses.replace(base, **changes)

    def replace(self, **changes: Any) -> AnalogConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Plain summary of the switches (for tables and result files)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["device"] = None if self.device is None else type(self.device).__name__
        return out
