"""Characterization procedures, campaign plans and program-verify (layer 6).

Example::

    from cimlab.procedures import load_plan, run_plan
    from cimlab.instruments.station import Station

    plan = load_plan("plans/quick.toml")          # strict: ConfigError on anything odd
    with Station.open("instruments/emulated.toml") as st:
        result = run_plan(plan, st, "data/quick.h5")     # checks cells and limits first
    print(result.table())

Procedures (``programming_error``, ``read_fluctuation``, ``relaxation``, ``bake_retention``,
``ber``, ``fault_map``, ``endurance``) write the tidy tables of docs/architecture.md;
program-verify (``cimlab.procedures.program_verify.program_verify``) is vectorised over all
cells, one pulse command and one read command per iteration. Every procedure runs in a
``ProcedureRun`` (``cimlab.procedures.run``: steps, resume, abort, instrument time) and sees the
bench and the store through the Protocols of ``cimlab.procedures.protocols``. Programming a
network's cells (``program_image``) works on arrays; the network side is ``cimlab.sim``.
See docs/procedures.md, "Writing a new bench procedure".

Importing this package does not import h5py, pymeasure or torch: names are loaded lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule
_EXPORTS: dict[str, str] = {
    "Plan": "plan",
    "load_plan": "plan",
    "plan_from_mapping": "plan",
    "EXPERIMENT_KINDS": "plan",
    "CellSet": "plan",
    "LevelSet": "plan",
    "BinaryCondition": "plan",
    "run_plan": "campaign",
    "CampaignResult": "campaign",
    "PROCEDURES": "characterization",
    "ProcedureRun": "run",
    "plan_section": "run",
    "ProcedureResult": "run",
    "programming_error": "characterization",
    "read_fluctuation": "characterization",
    "read_noise_series": "characterization",
    "relaxation": "characterization",
    "bake_retention": "characterization",
    "ber": "characterization",
    "fault_map": "characterization",
    "endurance": "characterization",
    "ProgramVerifyConfig": "program_verify",
    "ProgramVerifyResult": "program_verify",
    "PulseResponse": "program_verify",
    "TabulatedResponse": "program_verify",
    "program_single_shot": "program_verify",
    "measure_pulse_response": "program_verify",
    "measure_gate_curve": "program_verify",
    "format_report": "program_verify",
    # what the cells hold after programming; relaxation-aware programming (issue 13)
    "within_tolerance_at": "delayed_tolerance",
    "DelayedTolerance": "delayed_tolerance",
    "SettleConfig": "settle_verify",
    "SettleResult": "settle_verify",
    "program_settle_verify": "settle_verify",
    # programming a network's cells (arrays in, no torch)
    "ChipImage": "network_program",
    "ChipProgramResult": "network_program",
    "program_image": "network_program",
    # import of external data, report of a store
    "TidyFormat": "importer",
    "ImportResult": "importer",
    "import_tidy": "importer",
    "import_techc": "importer",
    "import_techa_bake": "importer",
    "import_tsdata": "importer",
    "summarize_run": "report",  # (the function report() is cimlab.procedures.report.report)
    "RunReport": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cimlab.procedures' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cimlab.procedures.{module}"), name)
