"""The one limits vocabulary: names defined once, one check, a missing limit is an error."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from cimlab.errors import ConfigError, LimitError
from cimlab.instruments.limits import (
    LIMIT_NAMES,
    StationLimits,
    check_limit,
    check_pulse,
    check_pulse_extremes,
    check_requests,
    check_set_gate,
    limit_value,
)
from cimlab.instruments.station_config import TransistorCalibration
from cimlab.procedures.plan import load_plan, plan_from_mapping

ROOT = Path(__file__).resolve().parents[2]

LIMITS = StationLimits(
    set_bl_max_v=3.0, set_wl_max_v=3.5, reset_sl_max_v=3.0, reset_wl_max_v=5.0,
    set_icc_max_a=700e-6, pulse_width_max_s=1e-3, read_v_max_v=0.5, mvm_v_max_v=0.5,
    smu_v_max_v=0.5, smu_i_max_a=1e-3, oven_temp_max_c=200.0)
CAL = TransistorCalibration(k_a_per_v2=2e-4, v_th_v=0.5)


def test_names_are_the_station_limits_fields():
    assert LIMIT_NAMES == tuple(f.name for f in dataclasses.fields(StationLimits))
    assert len(set(LIMIT_NAMES)) == len(LIMIT_NAMES) == 11


def test_within_and_beyond():
    check_limit(LIMITS, "read_v_max_v", 0.5)  # at the limit: allowed
    with pytest.raises(LimitError) as info:
        check_limit(LIMITS, "read_v_max_v", 0.51, what="read voltage", context="plan.toml",
                    station="bench.toml")
    text = str(info.value)
    for part in ("plan.toml", "read voltage = 0.51 V", "limits.read_v_max_v = 0.5 V",
                 "bench.toml", "nothing was sent"):
        assert part in text
    for bad in (math.nan, math.inf):
        with pytest.raises(LimitError):
            check_limit(LIMITS, "read_v_max_v", bad)


def test_unknown_name_is_a_config_error_not_a_skip():
    with pytest.raises(ConfigError) as info:
        check_limit(LIMITS, "read_max_v", 9.0, station="bench.toml")
    assert info.value.field == "limits.read_max_v" and "read_v_max_v" in info.value.expected
    with pytest.raises(ConfigError, match=r"limits\.set_bl"):
        check_requests(LIMITS, {"set_bl": 9.0})


def test_limits_without_the_field_are_a_config_error():
    """A limits object that lacks a field (a renamed limit, an old station) is refused."""
    partial = SimpleNamespace(**{n: getattr(LIMITS, n) for n in LIMIT_NAMES
                                 if n != "reset_sl_max_v"})
    with pytest.raises(ConfigError) as info:
        limit_value(partial, "reset_sl_max_v", station="old.toml")
    assert info.value.field == "limits.reset_sl_max_v" and info.value.source == "old.toml"


def test_check_requests_names_the_asking_field():
    with pytest.raises(LimitError, match=r"plan.toml, field 'experiment\[2\].v_set'"):
        check_requests(LIMITS, {"set_bl_max_v": 3.2, "oven_temp_max_c": 20.0},
                       fields={"set_bl_max_v": "experiment[2].v_set"}, context="plan.toml")
    check_requests(LIMITS, {"set_bl_max_v": 3.0, "oven_temp_max_c": 200.0})


@pytest.mark.parametrize(
    "polarity, v_pulse, v_gate, width, name",
    [
        ("set", 3.1, 1.0, 1e-6, "set_bl_max_v"),
        ("set", [1.0, -3.1], 1.0, 1e-6, "set_bl_max_v"),  # a magnitude
        ("set", 1.0, 3.6, 1e-6, "set_wl_max_v"),
        ("set", 1.0, 3.2, 1e-6, "set_icc_max_a"),  # 3.2 V gives 729 uA (k = 2e-4)
        ("set", 1.0, [1.0, math.nan], 1e-6, "set_wl_max_v"),
        ("reset", 3.1, 1.0, 1e-6, "reset_sl_max_v"),
        ("reset", 1.0, 5.1, 1e-6, "reset_wl_max_v"),
        ("reset", 1.0, 1.0, 2e-3, "pulse_width_max_s"),
    ],
)
def test_check_pulse(polarity, v_pulse, v_gate, width, name):
    with pytest.raises(LimitError, match=f"limits.{name}"):
        check_pulse(LIMITS, polarity, v_pulse, v_gate, width, calibration=CAL)


def test_compliance_holds_against_the_board_whatever_the_file_says():
    wrong = TransistorCalibration(k_a_per_v2=1.4e-4, v_th_v=0.5)  # says 3.2 V gives 510 uA
    check_pulse(LIMITS, "set", 1.0, 3.2, 1e-6, calibration=wrong)  # the file alone: passes
    board = CAL.v_gate_for(700e-6)  # where the board says 700 uA is reached
    with pytest.raises(LimitError, match="ARR:COMP:GATE"):
        check_pulse(LIMITS, "set", 1.0, 3.2, 1e-6, calibration=wrong, v_gate_at_icc_max=board)
    check_set_gate(LIMITS, board, v_gate_at_icc_max=board)  # at the board's voltage: allowed


def test_every_limit_a_plan_asks_for_is_a_station_limit():
    plan = load_plan(ROOT / "plans" / "full.toml")
    asked = plan.requested_limits()
    assert set(asked) <= set(LIMIT_NAMES)
    assert {"set_bl_max_v", "reset_sl_max_v", "set_icc_max_a", "oven_temp_max_c",
            "pulse_width_max_s"} <= set(asked)


class _Station:
    """What the plan pre-check reads of a station: limits, calibration, gate_voltage_for."""

    def __init__(self, limits):
        self.limits = limits
        self.path = "bench.toml"
        self.calibration = SimpleNamespace(transistor=CAL)

    def gate_voltage_for(self, icc_a):
        return CAL.v_gate_for(icc_a)


def test_plan_check_refuses_limits_it_cannot_find():
    """The plan pre-check used to skip a limit whose field it did not find: a station whose
    limits lack ``reset_sl_max_v`` let a 3.5 V RESET through. Now: ConfigError naming it."""
    plan = plan_from_mapping({"plan": {"name": "x"}, "experiment": [
        {"kind": "fault_map", "cells": {"count": 64},
         "condition": {"name": "p", "icc_a": 100e-6, "v_reset": 3.5}}]}, source="mem")
    partial = SimpleNamespace(**{n: getattr(LIMITS, n) for n in LIMIT_NAMES
                                 if n != "reset_sl_max_v"})
    with pytest.raises(ConfigError) as info:
        plan.check_limits(_Station(partial))
    assert info.value.field == "limits.reset_sl_max_v"
    with pytest.raises(LimitError, match="reset_sl_max_v"):
        plan.check_limits(_Station(LIMITS))
    with pytest.raises(ConfigError, match="limits"):
        plan.check_limits(SimpleNamespace(path="bench.toml"))  # no limits at all


def test_program_verify_extremes():
    """Network programming's pre-check: program-verify's extreme pulses, one call."""
    from cimlab.procedures.program_verify import ProgramVerifyConfig

    cfg = ProgramVerifyConfig()
    check_pulse_extremes(LIMITS, cfg, calibration=CAL, station="bench.toml")
    low = dataclasses.replace(LIMITS, reset_wl_max_v=cfg.v_gate_reset * 0.9)
    with pytest.raises(LimitError, match=r"limits\.reset_wl_max_v.*bench\.toml"):
        check_pulse_extremes(low, cfg, station="bench.toml")
    low = dataclasses.replace(LIMITS, set_bl_max_v=cfg.max_v_set() * 0.9)
    with pytest.raises(LimitError, match=r"limits\.set_bl_max_v"):
        check_pulse_extremes(low, cfg)
