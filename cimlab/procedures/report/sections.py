"""The shape of a report (:class:`Section`, :class:`RunReport`) and its text form
(:func:`format_report`: conductances in uS, 4 significant digits)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

#: Microsiemens per siemens: printed and plotted conductances are in uS.
US_PER_S = 1e6
_US = US_PER_S


@dataclass
class Section:
    """One summary table: SI values in ``frame``; ``conductance`` names its columns in S;
    ``shown``: the columns :func:`format_report` prints (default all; the frame keeps all)."""

    title: str
    frame: pd.DataFrame
    conductance: tuple[str, ...] = ()
    note: str = ""
    shown: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def display(self) -> pd.DataFrame:
        """A copy of the shown columns with conductances in uS (renamed ``*_uS``)."""
        df = self.frame.copy()
        if self.shown:
            df = df[[c for c in self.shown if c in df.columns]]
        rename = {}
        for col in self.conductance:
            if col in df.columns:
                df[col] = df[col] * _US
                rename[col] = col.removesuffix("_siemens") + "_uS"
        return df.rename(columns=rename).rename(columns=self.labels)


@dataclass
class RunReport:
    """The report of one run."""

    uid: str
    kind: str
    status: str
    sections: list[Section] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str) -> Section:
        for s in self.sections:
            if s.title == title:
                return s
        raise KeyError(f"no section {title!r}; sections: {[s.title for s in self.sections]}")



def _fmt(x: float) -> str:
    return f"{x:.4g}"


#: Printed tables and notes stay within this many columns (a 110-column terminal).
TEXT_WIDTH = 110


def format_report(reports: Iterable[RunReport], max_rows: int = 40,
                  width: int = TEXT_WIDTH) -> str:
    """Readable text of the reports (conductances in uS, 4 significant digits); notes wrap
    and a table wider than ``width`` continues below itself."""
    import textwrap

    lines: list[str] = []
    with pd.option_context("display.width", width, "display.max_columns", 30,
                           "display.max_rows", max_rows):
        for rep in reports:
            lines.append(f"=== run {rep.uid}  kind {rep.kind}  ({rep.status}) ===")
            for n in rep.notes:
                lines.extend(textwrap.wrap(f"note: {n}", width, subsequent_indent="      "))
            for sec in rep.sections:
                df = sec.display()
                if len(df) > max_rows:
                    continue  # full tables are in the store; printed ones stay short
                lines.append(f"-- {sec.title}")
                if sec.note:
                    lines.extend(textwrap.wrap(sec.note, width, initial_indent="   ",
                                               subsequent_indent="   "))
                text = df.to_string(index=False, float_format=_fmt)
                if max(map(len, text.splitlines()), default=0) > width:
                    text = df.to_string(index=False, float_format=_fmt, line_width=width)
                lines.append(text)
            lines.extend(f"plot: {p}" for p in rep.plots)
            lines.append("")
    return "\n".join(lines)
