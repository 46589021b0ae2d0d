"""The shared world: the oven ramps on the virtual clock and feeds the chip's thermal budget."""

from __future__ import annotations

import pytest

from cimlab.instruments.emulator.world import ZERO_C_K


def test_oven_ramp_and_thermal_budget(bench, oven, clock):
    chip = bench.chip
    rate = 0.05
    oven.ramp_rate_k_per_s = rate
    e0, t0 = chip.equivalent_time_s, clock.now()
    record = oven.bake(125, 3600.0, clock, poll_s=30.0)
    # ramp 25 -> 125 C at 0.05 K/s takes 2000 s; polled every 30 s
    assert record.soak_start_s - record.start_s == pytest.approx(2010.0, abs=30.0)
    assert record.soak_end_s - record.soak_start_s == pytest.approx(3600.0)
    assert oven.temperature_c == pytest.approx(25.0, abs=0.5)
    # equivalent time: integral of the Arrhenius factor over the piecewise-linear profile
    acc = chip.truth.acceleration
    dt_total = clock.now() - t0
    ramp_s = 100.0 / rate

    def ramp_integral(n=2000):
        h = ramp_s / n
        return sum(acc(25 + ZERO_C_K + rate * (k + 0.5) * h) for k in range(n)) * h

    hot = 125 + ZERO_C_K
    hot_s = (record.soak_end_s - record.start_s) - ramp_s  # at 125 C until the heater goes off
    room_s = dt_total - hot_s - 2 * ramp_s
    expected = 2 * ramp_integral() + hot_s * acc(hot) + room_s * acc(25 + ZERO_C_K)
    assert chip.equivalent_time_s - e0 == pytest.approx(expected, rel=2e-3)
    assert acc(hot) > 100  # the bake really accelerated ageing


def test_clock_advance_and_heater_off_cools(bench, oven, clock):
    oven.setpoint_c = 40
    oven.heater_enabled = True
    clock.sleep(100)
    assert oven.temperature_c == pytest.approx(25 + 0.05 * 100)
    oven.heater_enabled = False
    clock.sleep(50)
    assert oven.temperature_c == pytest.approx(27.5)
    assert clock.now() == pytest.approx(150.0)
    assert bench.chip.time_s == pytest.approx(150.0)


def test_oven_refuses_out_of_range(bench, oven):
    oven.write("SOUR:TEMP 900")
    assert oven.ask("SYST:ERR?").startswith("-222,")
    oven.write("SOUR:TEMP:RATE 0")
    assert oven.ask("SYST:ERR?").startswith("-222,")
