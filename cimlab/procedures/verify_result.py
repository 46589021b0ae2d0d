"""What a program-verify run did (:class:`ProgramVerifyResult`) and the comparison table
of several runs (:func:`format_report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ProgramVerifyResult:
    """Per-cell outcome and run totals of a program-verify (or single-shot) run."""

    scheme: str
    cells: np.ndarray
    target_siemens: np.ndarray
    g_verify_siemens: np.ndarray        # last verify read per cell [S]
    pulses: np.ndarray            # pulses per cell
    energy_j: np.ndarray          # programming energy per cell [J]
    success: np.ndarray           # within tolerance at the last verify read
    tolerance_siemens: float
    iterations: int
    round_trips: int
    instrument_time_s: float      # virtual/real clock time spent
    host_time_s: float            # wall time on this computer
    stuck: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    alternations: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_pulse_iteration: np.ndarray = field(default_factory=lambda: np.zeros(0))
    iteration_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    g_final_siemens: np.ndarray | None = None   # an independent read after the run, if taken
    calibration_round_trips: int = 0
    #: clock time [s] of each cell's last pulse in this run (the start of the batched pulse
    #: command that carried it; NaN: the cell needed no pulse, its last pulse is unknown)
    last_pulse_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: clock time [s] of the read behind ``g_verify_siemens`` (start of its batched read command)
    verify_read_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def concatenate(cls, parts: list[ProgramVerifyResult]) -> ProgramVerifyResult:
        """One result for consecutive runs over disjoint cell batches (same scheme): per-cell
        arrays joined in order, counts and times summed, iteration times joined."""
        if not parts:
            raise ValueError("no program-verify results to join")
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> np.ndarray:
            return np.concatenate([np.asarray(getattr(p, name)) for p in parts])

        finals = [p.g_final_siemens for p in parts]
        return cls(
            scheme=parts[0].scheme, cells=cat("cells"), target_siemens=cat("target_siemens"),
            g_verify_siemens=cat("g_verify_siemens"), pulses=cat("pulses"),
            energy_j=cat("energy_j"), success=cat("success"),
            tolerance_siemens=parts[0].tolerance_siemens,
            iterations=sum(int(p.iterations) for p in parts),
            round_trips=sum(int(p.round_trips) for p in parts),
            instrument_time_s=sum(float(p.instrument_time_s) for p in parts),
            host_time_s=sum(float(p.host_time_s) for p in parts),
            stuck=cat("stuck"), alternations=cat("alternations"),
            last_pulse_iteration=cat("last_pulse_iteration"),
            iteration_times_s=cat("iteration_times_s"),
            g_final_siemens=None if any(f is None for f in finals) else cat("g_final_siemens"),
            calibration_round_trips=sum(int(p.calibration_round_trips) for p in parts),
            last_pulse_time_s=cat("last_pulse_time_s"),
            verify_read_time_s=cat("verify_read_time_s"))

    def g0_time_s(self) -> np.ndarray:
        """Time [s] of each cell's verify read after its last pulse (NaN: no pulse)."""
        return self.verify_read_time_s - self.last_pulse_time_s

    def detected_stuck(self) -> np.ndarray:
        """Per cell: detected stuck (all False for a scheme that does not detect them)."""
        return (self.stuck if self.stuck.size == self.cells.size
                else np.zeros(self.cells.size, bool))

    def summary(self) -> dict[str, Any]:
        """Figures for the report table and the benchmark JSON."""
        err = self.g_verify_siemens - self.target_siemens
        p = self.pulses
        stuck = self.detected_stuck()
        resp = ~stuck
        out: dict[str, Any] = {
            "scheme": self.scheme,
            "cells": int(self.cells.size),
            "success_rate": float(self.success.mean()),
            "stuck_detected": int(stuck.sum()),
            "success_rate_responsive": float(self.success[resp].mean()) if resp.any() else 0.0,
            "pulses_mean": float(p.mean()),
            "pulses_mean_responsive": float(p[resp].mean()) if resp.any() else 0.0,
            "pulses_median": float(np.median(p)),
            "pulses_p99": float(np.percentile(p, 99)),
            "pulses_max": int(p.max()) if p.size else 0,
            "error_rms_siemens": float(np.sqrt(np.mean(err[resp] ** 2))) if resp.any() else 0.0,
            "error_p99_abs_siemens": float(np.percentile(np.abs(err[resp]), 99)) if resp.any()
            else 0.0,
            "energy_total_j": float(self.energy_j.sum()),
            "energy_per_cell_j": float(self.energy_j.mean()),
            "iterations": int(self.iterations),
            "round_trips": int(self.round_trips),
            "calibration_round_trips": int(self.calibration_round_trips),
            "instrument_time_s": float(self.instrument_time_s),
            "host_time_s": float(self.host_time_s),
        }
        if self.g_final_siemens is not None:
            ef = self.g_final_siemens - self.target_siemens
            out["final_within_tol"] = float(np.mean(np.abs(ef[resp]) <= self.tolerance_siemens))
            out["final_error_rms_siemens"] = float(np.sqrt(np.mean(ef[resp] ** 2)))
        return out

    def pulse_histogram(self) -> dict[int, int]:
        """Number of cells per pulse count."""
        vals, counts = np.unique(self.pulses, return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, counts, strict=True)}

    def pulse_distribution(self) -> str:
        """One line: share of cells per pulse-count bin (:func:`pulse_distribution`)."""
        return pulse_distribution(self.scheme, self.pulses)


def pulse_distribution(scheme: str, pulses: np.ndarray) -> str:
    """One line: share of cells per pulse-count bin (0, 1, 2-3, 4-7, 8-15, 16-31, 32+)."""
    edges = [0, 1, 2, 4, 8, 16, 32, np.iinfo(np.int64).max]
    labels = ["0", "1", "2-3", "4-7", "8-15", "16-31", "32+"]
    n = max(pulses.size, 1)
    parts = []
    for lo, hi, lab in zip(edges[:-1], edges[1:], labels, strict=True):
        share = np.count_nonzero((pulses >= lo) & (pulses < hi)) / n
        parts.append(f"{lab}: {100 * share:.1f}%")
    return f"{scheme} pulses/cell: " + ", ".join(parts)


_REPORT_ROWS = [
    ("cells", "{:.0f}", "cells", 1.0),
    ("verify read in band [%]", "{:.3f}", "success_rate", 100.0),
    ("stuck cells detected", "{:.0f}", "stuck_detected", 1.0),
    ("verify in band, resp. [%]", "{:.3f}", "success_rate_responsive", 100.0),
    ("pulses/cell, all (+calib.)", "{:.2f}", "pulses_per_cell_all", 1.0),
    ("pulses/cell mean", "{:.2f}", "pulses_mean", 1.0),
    ("pulses/cell mean, resp.", "{:.2f}", "pulses_mean_responsive", 1.0),
    ("pulses/cell median", "{:.1f}", "pulses_median", 1.0),
    ("pulses/cell p99", "{:.1f}", "pulses_p99", 1.0),
    ("pulses/cell max", "{:.0f}", "pulses_max", 1.0),
    ("verify error rms [uS]", "{:.3f}", "error_rms_siemens", 1e6),
    ("|verify error| p99 [uS]", "{:.3f}", "error_p99_abs_siemens", 1e6),
    ("final read within tol [%]", "{:.2f}", "final_within_tol", 100.0),
    ("final read error rms [uS]", "{:.3f}", "final_error_rms_siemens", 1e6),
    ("energy/cell [pJ]", "{:.2f}", "energy_per_cell_j", 1e12),
    ("energy total [uJ]", "{:.4f}", "energy_total_j", 1e6),
    ("iterations", "{:.0f}", "iterations", 1.0),
    ("round trips (+calib.)", "{:.0f}", "round_trips", 1.0),
    ("instrument time [s]", "{:.4f}", "instrument_time_s", 1.0),
    ("of it waiting [s]", "{:.0f}", "wait_time_s", 1.0),
    ("equivalent wait [s]", "{:.3g}", "equivalent_wait_s", 1.0),
    ("host time [s]", "{:.3f}", "host_time_s", 1.0),
]


def format_report(results: list[ProgramVerifyResult] | list[dict]) -> str:
    """A readable comparison table of several runs (one column per scheme)."""
    sums = [r if isinstance(r, dict) else r.summary() for r in results]
    head = f"{'':27s}" + "".join(f"{s['scheme']:>14s}" for s in sums)
    lines = [head, "-" * len(head)]
    for label, fmt, key, scale in _REPORT_ROWS:
        row = []
        for s in sums:
            v = s.get(key)
            row.append(f"{'-':>14s}" if v is None else f"{fmt.format(v * scale):>14s}")
        lines.append(f"{label:27s}" + "".join(row))
    return "\n".join(lines)

