"""Reading back a saved emulated Keithley 2450 (the ``smu.*`` entries of a bench state file,
written by :meth:`Keithley2450Emulator.state_dict`): every entry checked against the *RST
defaults' structure, one clear error naming the field otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np

from cimlab.instruments.emulator.smu_buffers import (
    DEFAULT_BUFFERS,
    FUNC_CODES,
    MAX_CAPACITY,
    STYLES,
    BufferSet,
)
from cimlab.instruments.emulator.smu_trigger import TriggerModel

_LAYOUT_KEYS = {"name", "capacity", "style", "fill_continuous", "start"}
_TRIGGER_KINDS = ("EMPTY", "SWEEP", "SIMPLE")


def same_kind(default: Any, value: Any) -> bool:
    """``value`` (from JSON) has the structure and types of ``default``."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and bool(np.isfinite(value))
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, dict):
        return isinstance(value, dict) and set(value) == set(default) and all(
            same_kind(default[k], value[k]) for k in default)
    return False


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(same_kind(0.0, x) for x in value)


def read_smu_state(reader: Any, keys: tuple[str, ...], fresh: Any) -> dict[str, Any]:
    """Validated attribute values of a saved SMU; ``fresh``: an instrument after *RST."""
    saved = reader.json("smu.settings", "the SMU settings")
    if not isinstance(saved, dict) or set(saved) != set(keys):
        raise reader.error("smu.settings", "the keys " + ", ".join(keys),
                           sorted(saved) if isinstance(saved, dict) else saved)
    out: dict[str, Any] = {}
    for key in keys:
        default, value = getattr(fresh, key), saved[key]
        if not same_kind(default, value):
            raise reader.error(f"smu.settings.{key}", f"a value like {default!r}", value)
        out[key] = float(value) if isinstance(default, float) else value
        if isinstance(default, dict):
            out[key] = {k: float(v) if isinstance(default[k], float) else v
                        for k, v in value.items()}
    seq = reader.json("smu.sequences", "the trigger model and source lists")
    expected = '{"trigger": {...TriggerModel fields}, "lists": {"VOLT": [..], "CURR": [..]}}'
    if not (isinstance(seq, dict) and set(seq) == {"trigger", "lists"}
            and isinstance(seq["lists"], dict) and set(seq["lists"]) == {"VOLT", "CURR"}
            and all(_numbers(v) for v in seq["lists"].values())):
        raise reader.error("smu.sequences", expected, seq)
    t = seq["trigger"]
    model_keys = set(TriggerModel().to_dict())
    if not (isinstance(t, dict) and set(t) == model_keys and t["kind"] in _TRIGGER_KINDS
            and t["func"] in ("VOLT", "CURR") and _numbers(t["levels"])
            and all(same_kind(d, t[k]) for k, d in TriggerModel().to_dict().items()
                    if k != "levels")):
        raise reader.error("smu.sequences.trigger", "the fields " + ", ".join(sorted(model_keys)),
                           t)
    out["trigger"] = TriggerModel.from_dict(t)
    out["source_list"] = {k: [float(x) for x in v] for k, v in seq["lists"].items()}
    layout = reader.json("smu.buffers", "the reading-buffer layout")
    styles = {s.upper() for s in STYLES}
    if not (isinstance(layout, list) and all(
            isinstance(b, dict) and set(b) == _LAYOUT_KEYS and isinstance(b["name"], str)
            and same_kind(1, b["capacity"]) and 1 <= b["capacity"] <= MAX_CAPACITY
            and b["style"] in styles and isinstance(b["fill_continuous"], bool)
            and same_kind(1, b["start"]) and 0 <= b["start"] < b["capacity"]
            for b in layout)
            and [b["name"] for b in layout][:2] == list(DEFAULT_BUFFERS)
            and len({b["name"] for b in layout}) == len(layout)):
        raise reader.error("smu.buffers", "a list of buffers (defbuffer1, defbuffer2 first) "
                           "with the keys " + ", ".join(sorted(_LAYOUT_KEYS)), layout)
    rows = reader.raw("smu.readings", "an (n, 8) float64 array of readings")
    if not (isinstance(rows, np.ndarray) and rows.dtype == np.float64 and rows.ndim == 2
            and rows.shape[1] == 8 and np.all(np.isfinite(rows))):
        raise reader.error("smu.readings", "an (n, 8) float64 array of readings", rows)
    if rows.size:
        idx = rows[:, 0]
        codes = rows[:, 6:8]
        counts = np.bincount(idx.astype(int), minlength=len(layout)) if np.all(
            (idx >= 0) & (idx < len(layout)) & (idx == np.round(idx))) else None
        if counts is None or np.any(counts > [b["capacity"] for b in layout]) or not np.all(
                np.isin(codes, np.arange(len(FUNC_CODES)))):
            raise reader.error("smu.readings", "rows of a listed buffer (within its size) "
                               "with valid function codes", f"array of shape {rows.shape}")
    out["buffers"] = BufferSet.restore(layout, rows)
    return out
