"""Characterization plans: TOML files listing experiments, validated strictly before any pulse.

A plan is a ``[plan]`` header and a list of ``[[experiment]]`` tables, each with a ``kind``
(one of :data:`EXPERIMENT_KINDS`) and the settings of that kind; see ``docs/procedures.md``
and ``plans/quick.toml`` for the format. Loading goes in three stages, all before the
first pulse, so a bad plan changes nothing on the chip or in the store:

1. :func:`load_plan` parses the TOML and converts it with :func:`cimlab.params.from_dict`:
   an unknown key, a wrong type or a value out of the declared bounds raises
   :class:`~cimlab.errors.ConfigError` naming the file, the field (``experiment[2].levels``)
   and what was expected.
2. :meth:`Plan.check_geometry` resolves every experiment's cells on the chip geometry: cells
   beyond the chip raise ConfigError ("larger than the chip").
3. :meth:`Plan.check_limits` compares every voltage, compliance current, oven temperature and
   pulse width the plan will ask for with the station's limits: LimitError.

Units: SI throughout (S, V, A, s); oven temperatures are ``temp_c`` [degC] as in a lab
notebook and are converted to K for the tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError, LimitError
from cimlab.instruments.limits import check_requests
from cimlab.params import check, from_dict, param, to_dict
from cimlab.procedures.plan_cells import CellSet
from cimlab.procedures.plan_experiments import (
    EXPERIMENT_KINDS,
    EXPERIMENT_NAME,
    BakeRetentionExp,
    BerExp,
    BinaryCondition,
    EnduranceExp,
    Experiment,
    FaultMapExp,
    FormingExp,
    GateCalibrationExp,
    IVSweepExp,
    ProgrammingErrorExp,
    ReadFluctuationExp,
    ReadNoiseSeriesExp,
    RelaxationExp,
    _short,
)
from cimlab.procedures.plan_levels import G_MAX_DEFAULT, G_MIN_DEFAULT, LevelSet
from cimlab.procedures.program_verify import ProgramVerifyConfig

# re-exported: ``from cimlab.procedures.plan import X`` keeps working for every name that
# lived here before the split into plan_cells / plan_levels / plan_experiments
__all__ = [
    "EXPERIMENT_KINDS",
    "EXPERIMENT_NAME",
    "G_MAX_DEFAULT",
    "G_MIN_DEFAULT",
    "MAX_PLAN_BYTES",
    "PLAN_NAME",
    "BakeRetentionExp",
    "BerExp",
    "BinaryCondition",
    "CellSet",
    "EnduranceExp",
    "Experiment",
    "FaultMapExp",
    "FormingExp",
    "GateCalibrationExp",
    "IVSweepExp",
    "LevelSet",
    "Plan",
    "PlanHeader",
    "ProgrammingErrorExp",
    "ReadFluctuationExp",
    "ReadNoiseSeriesExp",
    "RelaxationExp",
    "load_plan",
    "plan_from_mapping",
    "read_plan_file",
]

#: Largest plan file read [bytes]; the bundled plans are a few kB.
MAX_PLAN_BYTES = 1 << 20
#: A plan name becomes a file name (``data/<name>.h5``): letters, digits, ``._-``, at most 64
#: characters, not starting with a dot, so a path from a file never escapes its folder.
PLAN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class PlanHeader:
    """The ``[plan]`` table."""

    name: str = param("plan", doc="plan name")
    description: str = param("", doc="what the plan is for")
    seed: int = param(0, unit="1", lo=0, doc="base seed; each experiment adds its own")

    def __post_init__(self) -> None:
        check(self)
        if not PLAN_NAME.fullmatch(self.name):
            raise ConfigError(None, "name", "a file name: 1 to 64 letters, digits, '.', '_' or "
                              "'-', not starting with '.' (the store is data/<name>.h5)",
                              _short(self.name))
        if len(self.description) > 10_000:
            raise ConfigError(None, "description", "at most 10000 characters",
                              _short(self.description))


@dataclass(frozen=True)
class Plan:
    """A validated plan: header, experiments, the file it came from and its raw mapping."""

    header: PlanHeader
    experiments: tuple[Any, ...]
    source: str = ""
    raw: dict = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ checks
    def resolve_cells(self, geometry: Sequence[int]) -> list[np.ndarray]:
        """Cells of every experiment on ``geometry`` (ConfigError if beyond the chip)."""
        out = []
        for i, exp in enumerate(self.experiments):
            f = f"experiment[{i}].cells"
            cells = exp.cells.resolve(geometry, self.seed_of(i), source=self.source,
                                      field_name=f)
            if isinstance(exp, BerExp) and cells.size < exp.cells_needed():
                raise ConfigError(self.source, f,
                                  f"at least {exp.cells_needed()} cells ({len(exp.conditions)} "
                                  f"conditions x {exp.bits} bits x cells per bit of "
                                  f"{'/'.join(exp.structures)})", int(cells.size))
            if isinstance(exp, ProgrammingErrorExp) and "single_shot" in exp.modes \
                    and exp.calibration_cells > cells.size:
                raise ConfigError(self.source, f"experiment[{i}].calibration_cells",
                                  f"at most the experiment's {cells.size} cells",
                                  exp.calibration_cells)
            if isinstance(exp, ReadFluctuationExp) and exp.smu_cells > cells.size:
                raise ConfigError(self.source, f"experiment[{i}].smu_cells",
                                  f"at most the experiment's {cells.size} cells", exp.smu_cells)
            out.append(cells)
        return out

    def check_geometry(self, geometry: Sequence[int]) -> None:
        """Raise ConfigError if any experiment needs cells beyond a chip of ``geometry``."""
        self.resolve_cells(geometry)

    def requested_limits(self) -> dict[str, float]:
        """The largest value of each limited quantity the plan will ask the station for,
        keyed by station limit name (:data:`cimlab.instruments.limits.LIMIT_NAMES`); a
        quantity the plan never asks for is absent."""
        return {k: v for k, (v, _) in self._requests().items()}

    def _requests(self) -> dict[str, tuple[float, str]]:
        """Largest value of each limited quantity and the plan field that asks for it."""
        req: dict[str, tuple[float, str]] = {}

        def up(key: str, value: float, where: str) -> None:
            if key not in req or float(value) > req[key][0]:
                req[key] = (float(value), where)

        for i, exp in enumerate(self.experiments):
            e = f"experiment[{i}]"
            for v in _verify_configs(exp):
                up("set_bl_max_v", v.max_v_set(), f"{e}.verify.v_set_max")
                up("reset_sl_max_v", v.max_v_reset(), f"{e}.verify.v_reset_max")
                if v.scheme == "ispp" and v.v_gate_set > v.v_gate_max:
                    up("set_wl_max_v", v.v_gate_set, f"{e}.verify.v_gate_set")
                else:
                    up("set_wl_max_v", v.v_gate_max, f"{e}.verify.v_gate_max")
                up("reset_wl_max_v", v.v_gate_reset, f"{e}.verify.v_gate_reset")
                up("pulse_width_max_s", v.width_s, f"{e}.verify.width_s")
            if isinstance(exp, ProgrammingErrorExp) and "single_shot" in exp.modes:
                up("set_bl_max_v", exp.v_set, f"{e}.v_set")
                up("reset_sl_max_v", exp.v_reset, f"{e}.v_reset")
                up("set_wl_max_v", exp.v_gate_max, f"{e}.v_gate_max")
                up("reset_wl_max_v", exp.v_gate_reset, f"{e}.v_gate_reset")
                up("pulse_width_max_s", exp.width_s, f"{e}.width_s")
            for c, f in _conditions_with_fields(exp, e):
                up("set_bl_max_v", c.v_set, f"{f}.v_set")
                up("reset_sl_max_v", c.v_reset, f"{f}.v_reset")
                if c.v_gate_reset is not None:
                    up("reset_wl_max_v", c.v_gate_reset, f"{f}.v_gate_reset")
                up("set_icc_max_a", c.icc_a, f"{f}.icc_a")
                up("pulse_width_max_s", c.width_s, f"{f}.width_s")
            if isinstance(exp, BakeRetentionExp):
                up("oven_temp_max_c", max(exp.temps_c),
                   f"{e}.temps_c[{list(exp.temps_c).index(max(exp.temps_c))}]")
            if isinstance(exp, (IVSweepExp, GateCalibrationExp)):
                top = max(exp.v_set_max, exp.v_reset_max)
                up("smu_v_max_v", top, f"{e}.v_{'set' if top == exp.v_set_max else 'reset'}"
                   "_max")
                up("smu_i_max_a", exp.smu_limit_a, f"{e}.smu_limit_a")
            if isinstance(exp, IVSweepExp):
                up("set_icc_max_a", exp.compliance_a, f"{e}.compliance_a")
            if isinstance(exp, GateCalibrationExp):
                up("set_icc_max_a", exp.lrs_compliance_a, f"{e}.lrs_compliance_a")
                up("set_wl_max_v", max(exp.v_gates), f"{e}.v_gates")
            if isinstance(exp, FormingExp):
                up("smu_v_max_v", exp.v_max, f"{e}.v_max")
                up("smu_i_max_a", exp.read_limit_a, f"{e}.read_limit_a")
                up("set_icc_max_a", exp.compliance_a, f"{e}.compliance_a")
            if isinstance(exp, ReadFluctuationExp) and exp.smu_cells:
                up("smu_v_max_v", exp.smu_v, f"{e}.smu_v")
                up("smu_i_max_a", exp.smu_compliance_a, f"{e}.smu_compliance_a")
        return req

    def check_limits(self, station: Any) -> None:
        """Raise LimitError if the plan asks for anything beyond ``station``'s limits.

        Compares every voltage, width, compliance, SMU level and oven temperature the plan
        will use with ``station.limits`` through the one station-limit check
        (:func:`cimlab.instruments.limits.check_requests`), and asks
        ``station.gate_voltage_for`` for every compliance current (LimitError beyond
        ``set_icc_max_a`` or ``set_wl_max_v``). Nothing is sent to any instrument. The error
        names the plan file, the plan field, the value, the station limit and the station
        file. A station without limits, or limits without one of the names the plan needs,
        is a ConfigError naming the limit (never a skip).
        """
        limits = getattr(station, "limits", None)
        station_file = getattr(station, "path", None)
        if limits is None:
            raise ConfigError(station_file, "limits",
                              "a station with [limits] (the plan is checked against them)")
        req = self._requests()
        for i, exp in enumerate(self.experiments):
            for c, f in _conditions_with_fields(exp, f"experiment[{i}]"):
                try:
                    vg = float(station.gate_voltage_for(c.icc_a))
                except LimitError as exc:
                    raise LimitError(
                        f"{self.source}: field '{f}.icc_a' = {c.icc_a:g} A: {exc}; lower it "
                        "in the plan (or raise the limit in the station file if the device "
                        "allows it). Nothing was sent.") from None
                if vg > req.get("set_wl_max_v", (-math.inf, ""))[0]:
                    req["set_wl_max_v"] = (vg, f"{f}.icc_a (word-line voltage for that "
                                           "compliance)")
                if c.v_gate_reset is None and vg > req.get("reset_wl_max_v",
                                                           (-math.inf, ""))[0]:
                    req["reset_wl_max_v"] = (vg, f"{f}.icc_a (the RESET word line follows "
                                             "the SET one when v_gate_reset is not set)")
        for i, exp in enumerate(self.experiments):
            icc_f = {IVSweepExp: "compliance_a", GateCalibrationExp: "lrs_compliance_a",
                     FormingExp: "compliance_a"}.get(type(exp))
            if icc_f is None:
                continue
            try:
                vg = float(station.gate_voltage_for(getattr(exp, icc_f)))
            except LimitError as exc:
                raise LimitError(f"{self.source}: field 'experiment[{i}].{icc_f}' = "
                                 f"{getattr(exp, icc_f):g} A: {exc}") from None
            if vg > req.get("set_wl_max_v", (-math.inf, ""))[0]:
                req["set_wl_max_v"] = (vg, f"experiment[{i}].{icc_f} (word-line voltage for "
                                       "that compliance)")
        icc_fn = getattr(getattr(getattr(station, "calibration", None), "transistor", None),
                         "icc", None)
        if icc_fn is not None:
            for i, exp in enumerate(self.experiments):
                for v in _verify_configs(exp):
                    icc = float(icc_fn(v.max_v_gate_set()))
                    if icc > req.get("set_icc_max_a", (-math.inf, ""))[0]:
                        req["set_icc_max_a"] = (
                            icc, f"experiment[{i}].verify."
                            f"{'v_gate_set' if v.scheme == 'ispp' else 'v_gate_max'}"
                            " (compliance at that word-line voltage)")
        check_requests(limits, {k: v for k, (v, _) in req.items()},
                       fields={k: w for k, (_, w) in req.items()}, context=self.source,
                       station=station_file)

    def seed_of(self, index: int) -> int:
        """Seed of experiment ``index``: the header seed plus the experiment's own seed."""
        return int(self.header.seed * 1000 + self.experiments[index].seed * 17 + index)

    def to_dict(self) -> dict:
        """Plain mapping (for the run metadata)."""
        return {"plan": to_dict(self.header), "experiment": [to_dict(e) for e in self.experiments]}


def _verify_configs(exp: Any) -> list[ProgramVerifyConfig]:
    v = getattr(exp, "verify", None)
    if v is None:
        return []
    if isinstance(exp, ProgrammingErrorExp) and "verify" not in exp.modes:
        return []
    return [v]


def _conditions(exp: Any) -> list[BinaryCondition]:
    return [c for c, _ in _conditions_with_fields(exp, "")]


def _conditions_with_fields(exp: Any, prefix: str) -> list[tuple[BinaryCondition, str]]:
    """The binary conditions of an experiment with their plan field (``prefix.conditions[j]``
    or ``prefix.condition``)."""
    if isinstance(exp, (BerExp, EnduranceExp)):
        return [(c, f"{prefix}.conditions[{j}]") for j, c in enumerate(exp.conditions)]
    if isinstance(exp, FaultMapExp):
        return [(exp.condition, f"{prefix}.condition")]
    return []


# --------------------------------------------------------------------------- loading
def plan_from_mapping(data: Mapping[str, Any], *, source: str | Path = "<plan>") -> Plan:
    """Build a :class:`Plan` from a TOML-like mapping, strictly (ConfigError on anything odd)."""
    src = str(source)
    if not isinstance(data, Mapping):
        raise ConfigError(src, "<root>", "a table with [plan] and [[experiment]]", data)
    unknown = sorted(set(data) - {"plan", "experiment"})
    if unknown:
        raise ConfigError(src, unknown[0], "no such key; a plan has [plan] and [[experiment]]")
    header = from_dict(PlanHeader, data.get("plan", {}), source=src, prefix="plan.")
    exps_raw = data.get("experiment", [])
    if not isinstance(exps_raw, list) or not exps_raw:
        raise ConfigError(src, "experiment", "one or more [[experiment]] tables", exps_raw)
    exps = []
    labels: set[str] = set()
    for i, raw in enumerate(exps_raw):
        prefix = f"experiment[{i}]."
        if not isinstance(raw, Mapping):
            raise ConfigError(src, prefix[:-1], "a table", raw)
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in EXPERIMENT_KINDS:
            raise ConfigError(src, prefix + "kind", "one of " + ", ".join(EXPERIMENT_KINDS),
                              kind)
        try:
            exp = from_dict(EXPERIMENT_KINDS[kind], raw, source=src, prefix=prefix)
        except ConfigError as exc:
            if exc.source in ("<input>", "None"):
                raise ConfigError(src, prefix + exc.field, exc.expected, exc.got) from None
            raise
        if exp.label in labels:
            raise ConfigError(src, prefix + "name", "a name distinct from the other experiments",
                              exp.label)
        labels.add(exp.label)
        exps.append(exp)
    return Plan(header=header, experiments=tuple(exps), source=src, raw=dict(data))


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (size, encoding, syntax, keys, types, bounds).

    ConfigError on failure, before anything larger than :data:`MAX_PLAN_BYTES` is read.
    """
    p = Path(path)
    return plan_from_mapping(read_plan_file(p), source=p)


def read_plan_file(path: Path) -> dict[str, Any]:
    """The TOML mapping of a plan file; ConfigError for a missing file, a directory, a file
    over :data:`MAX_PLAN_BYTES`, text that is not UTF-8, bad syntax or absurd nesting."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    if path.is_dir():
        raise ConfigError(path, "<file>", "a plan file (TOML), not a directory")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, "<file>", "an existing plan file (TOML)") from None
    except OSError as exc:
        raise ConfigError(path, "<file>", f"a readable plan file ({exc.strerror})") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise ConfigError(path, "<file>", f"a plan file of at most {MAX_PLAN_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "<encoding>", f"UTF-8 text (TOML); byte {exc.start} is not")\
            from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "<syntax>", f"valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(path, "<syntax>", "TOML nested a reasonable depth") from None
