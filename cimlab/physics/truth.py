"""Ground truth of an emulated chip, for tests and for the fit-vs-truth round trip.

``chip.truth`` gives the true parameters and formulas behind every statistic a procedure can
measure. Accessors that need the present conductance (``conductance``, ``programmed``) sample
the hidden relaxation process with a separate random stream, so calling them does not change
the random numbers the chip's operations draw. (A tile accessor that has to build a tile's MVM
snapshot builds it from the truth stream; the next MVM then reuses that snapshot instead of
drawing one.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimlab.physics import binary, crossbar, faults
from cimlab.physics.profile import ChipProfile
from cimlab.physics.read_noise import flicker_variance
from cimlab.physics.retention import acceleration

if TYPE_CHECKING:
    from cimlab.physics.chip import ReRAMChip


class ChipTruth:
    """Ground-truth accessors of one :class:`~cimlab.physics.ReRAMChip`."""

    def __init__(self, chip: ReRAMChip) -> None:
        self._chip = chip

    # -- parameters --------------------------------------------------------------------------
    @property
    def profile(self) -> ChipProfile:
        """The true parameters (the chip's profile)."""
        return self._chip.profile

    @property
    def d2d(self) -> dict[str, np.ndarray]:
        """Per-cell device-to-device parameters (read-only views): set_v_th [V], set_rate [1],
        reset_v_th [V], reset_rate [1], ceil_factor [1], floor_factor [1],
        transistor_dv_th [V], damage_limit [1]."""
        out = {}
        for k, a in self._chip.d2d.items():
            v = a.view()
            v.flags.writeable = False
            out[k] = v
        return out

    # -- formulas ----------------------------------------------------------------------------
    def read_sigma(self, g: Any) -> Any:
        """Std [S] of the white part of one read of a cell at true conductance ``g`` [S]
        (the whole read noise when the profile has no 1/f part)."""
        return self.profile.read.sigma(g)

    def flicker_sigma(self, g: Any) -> Any:
        """Stationary std [S] of the 1/f part of reads at true conductance ``g`` [S] (0 when
        the profile has none; cimlab.physics.read_noise)."""
        out = np.sqrt(flicker_variance(self.profile.read, g))
        return float(out[0]) if np.ndim(g) == 0 else out

    def relaxation_mean(self, g0: Any, t_eq_s: Any) -> Any:
        """Mean change [S] of a cell programmed to ``g0`` [S] after equivalent room-temperature
        time ``t_eq_s`` [s] (before the physical floor ``window.g_phys_min``)."""
        return self.profile.relaxation.mean_shift(g0, t_eq_s)

    def relaxation_var(self, g0: Any, t_eq_s: Any) -> Any:
        """Variance [S^2] of that change."""
        return self.profile.relaxation.variance(g0, t_eq_s)

    def acceleration(self, temperature_k: float) -> float:
        """Arrhenius factor: equivalent room-temperature seconds per second at
        ``temperature_k`` [K]."""
        return acceleration(self.profile.retention, temperature_k, self.profile.window.t_room_k)

    def ber(self, condition: str, structure: str = "1T1R", g_ref: float | None = None,
            include_read_noise: bool = True) -> float:
        """Bit error rate of a binary programming condition right after programming
        ("1T1R": one cell vs threshold ``g_ref``, default optimal; "2T2R": differential pair).
        See :mod:`cimlab.physics.binary` for what paper 003's BER means."""
        return binary.ber(self.profile, condition, structure, g_ref, include_read_noise)

    def ber_reference(self, condition: str, include_read_noise: bool = True) -> float:
        """The optimal 1T1R sense threshold [S] of ``condition``."""
        lrs, hrs = binary.distributions(self.profile, condition, include_read_noise)
        return binary.optimal_reference(lrs, hrs)

    def lrs_distribution(self, condition: str) -> binary.StateDistribution:
        """Conductance distribution after a full SET of ``condition`` (no read noise)."""
        return binary.distributions(self.profile, condition, False)[0]

    def hrs_distribution(self, condition: str) -> binary.StateDistribution:
        """Conductance distribution after a full SET then a full RESET of ``condition``."""
        return binary.distributions(self.profile, condition, False)[1]

    def endurance_median(self, condition: str) -> float:
        """Median cycles to failure under ``condition``."""
        return binary.endurance_median(self.profile, condition)

    def binary_table(self) -> list[dict]:
        """Per condition: gate voltage, LRS/HRS medians and sigmas, BERs, energies, endurance."""
        return binary.reference_table(self.profile)

    # -- state -------------------------------------------------------------------------------
    def fault_codes(self) -> np.ndarray:
        """Per-cell fault code (copy): 0 ok, +1 stuck-on, -1 stuck-off, +2 worn out."""
        return self._chip._fault.copy()

    def stuck_mask(self) -> np.ndarray:
        """int8 per cell, 0 ok, +1 stuck-on, -1 stuck-off (worn-out cells by their level)."""
        w = self.profile.window
        return faults.stuck_mask(self._chip._fault, self._chip._g_prog, 0.5 * (w.g_min + w.g_max))

    def forming_voltage(self, cells: Any = None) -> np.ndarray:
        """Per-cell forming voltage [V] of a pristine chip (profile.forming; copy): ``+inf``
        for cells that never form (stuck off), NaN for stuck-on cells (no forming needed);
        all NaN on a chip without the pristine option (every cell formed)."""
        chip = self._chip
        idx = np.arange(chip.n_cells) if cells is None else chip._cells(cells)
        if chip._v_form is None:
            return np.full(idx.size, np.nan)
        return chip._v_form[idx].copy()

    def unformed(self, cells: Any = None) -> np.ndarray:
        """Per-cell bool: still in the pristine (unformed) state (all False without the
        option)."""
        chip = self._chip
        idx = np.arange(chip.n_cells) if cells is None else chip._cells(cells)
        if chip._unformed is None:
            return np.zeros(idx.size, dtype=bool)
        return chip._unformed[idx].copy()

    def cycles(self) -> np.ndarray:
        """Per-cell count of SET pulses that switched more than half way (copy)."""
        return self._chip._cycles.copy()

    def damage(self) -> np.ndarray:
        """Per-cell accumulated wear (copy); a cell fails at its ``d2d['damage_limit']``."""
        return self._chip._damage.copy()

    def programmed(self, cells: Any) -> np.ndarray:
        """Noiseless conductance [S] right after each cell's last programming pulse."""
        return self._chip._g_prog[self._chip._cells(cells)].copy()

    def programmed_time(self, cells: Any) -> np.ndarray:
        """Equivalent time [s] of each cell's last programming pulse."""
        chip = self._chip
        return chip._e_prog_rel[chip._cells(cells)] + chip._clock.epoch_s

    def conductance(self, cells: Any, now_s: float | None = None) -> np.ndarray:
        """Noiseless true conductance [S] now (relaxation and retention included, no read
        noise, no I-V nonlinearity). An observation of the hidden process (drawn from the
        truth stream), consistent with every read before and after it. ``now_s`` moves the
        chip clock like an operation does (it must not lie before ``chip.time_s``)."""
        chip = self._chip
        idx = chip._cells(cells)
        if now_s is not None:
            chip._now(now_s)
        return chip._observe(idx, chip._truth_rng)

    def _tile(self, tile: int):
        return self._chip._tile_state(tile, self._chip._truth_rng)

    def transfer_matrix(self, tile: int) -> np.ndarray:
        """The cached ``cols x rows`` IR-drop transfer matrix [S] the last MVM of ``tile`` used
        (built now if there is none)."""
        return self._tile(tile).t.copy()

    def tile_conductance(self, tile: int) -> np.ndarray:
        """The ``rows x cols`` conductance snapshot [S] the MVMs of ``tile`` use."""
        return self._tile(tile).g.copy()

    def mvm_ideal(self, tile: int, v_rows: Any) -> np.ndarray:
        """Noiseless MVM with ideal wires, ``v @ G`` [A], on the tile's snapshot."""
        return np.asarray(v_rows, dtype=float) @ self._tile(tile).g

    def mvm_exact(self, tile: int, v_rows: Any) -> np.ndarray:
        """Noiseless MVM with IR drop [A] on the tile's snapshot."""
        return np.asarray(v_rows, dtype=float) @ self._tile(tile).t.T

    @staticmethod
    def nodal_matrix(g: np.ndarray, r_row: np.ndarray, r_col: np.ndarray):
        """The sparse nodal matrix of a tile (see :mod:`cimlab.physics.crossbar`)."""
        return crossbar.nodal_matrix(g, r_row, r_col)
