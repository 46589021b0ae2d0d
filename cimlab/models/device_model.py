"""The device model: every effect of a ReRAM array in one object, with samplers.

>>> import numpy as np
>>> from cimlab.models import DeviceModel
>>> dm = DeviceModel.default()
>>> rng = np.random.default_rng(0)
>>> g = dm.sample_programmed(np.full(4, 20e-6), rng)      # conductance right after programming
>>> g_day = dm.sample_aged(g, 86400.0, 358.15, rng)        # one day at 85 C
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.models._array import asarray, check_generator, is_torch, randn_like, xp
from cimlab.models.effects import (
    K_B_EV,
    BinaryStates,
    ConductanceWindow,
    ProgrammingError,
    ReadNoise,
    Relaxation,
    Retention,
    StuckAt,
    WireResistance,
    paper003_conditions,
)
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum
from cimlab.params import check, param


@dataclass(frozen=True)
class Provenance:
    """Where a model came from: literature, or a fit to the data of a store."""

    source: str = param("literature", choices=("literature", "fit", "edited"), doc="origin")
    store_path: str = param("", doc="measurement store the fits used")
    data_sha256: str = param("", doc="sha256 of the tables the fits used (see fit.hash_tables)")
    run_uids: tuple[str, ...] = param((), doc="store runs the fits used")
    cimlab_version: str = param("", doc="cimlab version that wrote the model")
    created_utc: str = param("", doc="ISO 8601 UTC time of creation")
    notes: str = param("", doc="free text")

    def __post_init__(self):
        check(self)


EFFECTS: tuple[str, ...] = (
    "window",
    "programming",
    "read_noise",
    "relaxation",
    "retention",
    "binary",
    "stuck",
    "wire",
    "read_noise_spectrum",  # white + 1/f spectrum of reads (cimlab.models.read_noise_spectrum)
)


@dataclass(frozen=True)
class DeviceModel:
    """Statistical model of a ReRAM array (see docs/architecture.md section 7).

    Attributes are the effects (:mod:`cimlab.models.effects`); ``programming_other`` holds the
    programming error of further programming modes measured (e.g. single-shot next to verify;
    :meth:`programming_for` picks by mode). The samplers take an explicit generator:
    ``numpy.random.Generator`` for NumPy input, ``torch.Generator`` for tensors.
    Sampled conductances are floored at 0 S (a conductance cannot be negative); nothing else
    is clipped.
    """

    name: str = "default"
    window: ConductanceWindow = field(default_factory=ConductanceWindow)
    programming: ProgrammingError = field(default_factory=ProgrammingError)
    programming_other: tuple[ProgrammingError, ...] = ()
    read_noise: ReadNoise = field(default_factory=ReadNoise)
    relaxation: Relaxation = field(default_factory=Relaxation)
    retention: Retention = field(default_factory=Retention)
    binary: BinaryStates = field(default_factory=BinaryStates)
    stuck: StuckAt = field(default_factory=StuckAt)
    wire: WireResistance = field(default_factory=WireResistance)
    #: white + 1/f spectrum of repeated reads (helper "noise"; default: white only)
    read_noise_spectrum: ReadNoiseSpectrum = field(default_factory=ReadNoiseSpectrum)
    provenance: Provenance = field(default_factory=Provenance)

    # ---------------------------------------------------------------- construction / files
    @classmethod
    def default(cls) -> DeviceModel:
        """Literature defaults (papers 000, 001, 003, 004 and DESIGN.md; each effect's
        ``source`` and docstring cite the numbers)."""
        from cimlab import __version__

        return cls(
            name="default",
            binary=BinaryStates(conditions=paper003_conditions()),
            provenance=Provenance(
                source="literature",
                cimlab_version=__version__,
                notes="DeviceModel.default(): literature values, no fit",
            ),
        )

    @classmethod
    def load(cls, path: str | Path, fill_defaults: bool = False) -> DeviceModel:
        """Read a model JSON file, strictly (unknown fields, missing fields, wrong units,
        values out of bounds and malformed JSON raise ConfigError naming the file and the
        dotted field); older schema versions are migrated. ``fill_defaults=True`` takes the
        literature default for each missing effect / parameter and warns
        (:class:`~cimlab.models.serialization.FilledDefaultsWarning`)."""
        from cimlab.models.serialization import load

        return load(path, fill_defaults=fill_defaults)

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (schema :data:`~cimlab.models.serialization.SCHEMA_VERSION`)."""
        from cimlab.models.serialization import save

        return save(self, path)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON document (a dict) :meth:`save` writes."""
        from cimlab.models.serialization import to_document

        return to_document(self)

    def replace(self, **changes: Any) -> DeviceModel:
        """A copy with some effects replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def programming_for(self, mode: str) -> ProgrammingError:
        """Programming error of ``mode`` ("single_shot" or "verify")."""
        for p in (self.programming, *self.programming_other):
            if p.mode == mode:
                return p
        raise KeyError(
            f"no programming-error model for mode {mode!r}; have "
            f"{[p.mode for p in (self.programming, *self.programming_other)]}"
        )

    # ------------------------------------------------------------------------ samplers
    def sample_programmed(self, g_target: Any, generator: Any, mode: str | None = None):
        """Conductance [S] right after programming to ``g_target`` [S] (programming error)."""
        check_generator(g_target, generator, "sample_programmed")
        pe = self.programming if mode is None else self.programming_for(mode)
        g = asarray(g_target)
        out = g + pe.mean_offset + pe.sigma(g) * randn_like(g, generator)
        return _floor0(out)

    def sample_read(self, g: Any, generator: Any):
        """One noisy read [S] of cells at conductance ``g`` [S] (read noise)."""
        check_generator(g, generator, "sample_read")
        g = asarray(g)
        return _floor0(g + self.read_noise.sigma(g) * randn_like(g, generator))

    def sample_aged(self, g: Any, t_s: Any, temp_k: Any, generator: Any):
        """Conductance [S] of cells programmed to ``g`` [S] after ``t_s`` [s] at ``temp_k`` [K].

        Time at temperature is converted to equivalent room-temperature time with the
        Arrhenius factor (:attr:`retention`), then the relaxation mean shift and extra variance
        at that time are applied (one independent draw per cell).
        """
        check_generator(g, generator, "sample_aged")
        g = asarray(g)
        t_eq = self.retention.equivalent_time(t_s, temp_k)
        shift = self.relaxation.mean_shift(g, t_eq)
        sigma = self.relaxation.sigma(g, t_eq)
        return _floor0(g + shift + sigma * randn_like(g, generator))

    def sample_stuck(self, shape: tuple[int, ...], generator: Any):
        """int8 mask of stuck cells: 0 ok, +1 stuck-on, -1 stuck-off."""
        return self.stuck.sample(tuple(shape), generator)

    def sigma_total(self, g: Any, t_s: Any = 0.0, temp_k: float | None = None):
        """Std [S] of one read at time ``t_s`` after programming to ``g``: programming,
        relaxation (at ``temp_k``, default room temperature) and read noise in quadrature."""
        g = asarray(g)
        t_eq = t_s if temp_k is None else self.retention.equivalent_time(t_s, temp_k)
        v = (
            self.programming.sigma(g) ** 2
            + self.relaxation.variance(g, t_eq)
            + self.read_noise.sigma(g) ** 2
        )
        return xp(v).sqrt(v)

    def predicted_moments(
        self, g_target: Any, t_s: Any = 0.0, temp_k: float | None = None,
        include_read: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std [S] of a read ``t_s`` after programming to ``g_target`` (NumPy).

        Programming error (mean offset and sigma), relaxation at the equivalent time
        (``temp_k``; default room temperature) and, with ``include_read``, one read's noise,
        combined as one normal ``N(mu, sigma)`` floored at 0 S as the samplers floor it:
        the moments of ``max(X, 0)`` (exact when only the last stage reaches 0 S). What a
        measured histogram of a level shows, including the truncation of a low level whose
        spread reaches zero conductance.
        """
        g = np.asarray(g_target, dtype=float)
        t = np.asarray(t_s, dtype=float)
        t_eq = t if temp_k is None else np.asarray(self.retention.equivalent_time(t, temp_k))
        mu = g + self.programming.mean_offset + np.asarray(self.relaxation.mean_shift(g, t_eq))
        var = np.asarray(self.programming.sigma(g)) ** 2 + np.asarray(
            self.relaxation.variance(g, t_eq))
        if include_read and self.programming.read_noise == "included":
            include_read = False  # the programming sigma already holds one read's noise
        if include_read:
            var = var + np.asarray(self.read_noise.sigma(g)) ** 2
        return rectified_moments(mu, var)

    def summary(self) -> str:
        """Readable multi-line description (what ``cimlab model show`` prints)."""
        from cimlab.models.report import describe

        return describe(self)


def rectified_moments(mu: Any, var: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``max(X, 0)`` for ``X ~ N(mu, var)`` (the samplers' floor at 0 S)."""
    from scipy.special import ndtr

    mu = np.asarray(mu, dtype=float)
    var = np.asarray(var, dtype=float)
    sd = np.sqrt(np.maximum(var, 1e-300))
    a = mu / sd
    phi = np.exp(-0.5 * a * a) / np.sqrt(2.0 * np.pi)
    cdf = ndtr(a)
    m1 = mu * cdf + sd * phi
    m2 = (mu * mu + var) * cdf + mu * sd * phi
    return m1, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))


def _floor0(g: Any):
    if is_torch(g):
        return g.clamp_min(0.0)
    out = xp(g).maximum(g, 0.0)
    return out


__all__ = ["EFFECTS", "K_B_EV", "DeviceModel", "Provenance"]
