"""Progress of a long procedure, visible however it runs: a tqdm bar on a terminal, periodic
one-line reports on stderr when nobody watches a terminal (stdout redirected to a file, a
batch job, ``nohup``), and the same lines in the run's log (``cimlab.progress``, INFO).

:func:`configure` sets, for the process, whether the periodic lines go to stderr and how often
(the ``cimlab`` commands call it from ``--progress-lines`` / ``--progress-every``); library
use leaves them off. :class:`Progress` is one bar::

    bar = Progress(total=8, desc="bake-85C: bake", status=lambda: {"rows": 1200})
    bar.update(1)   # tqdm, and at most one line every interval_s
    bar.close()     # a last line when the work is done

A line reads ``cimlab progress: bake-85C: bake 3/8 (38 %), rows 1200, instrument 1.2 h,
elapsed 0:02:13, ETA 0:03:40`` (the ETA from the elapsed host time per unit done; a
``status`` callable adds the procedure's own fields, which must not touch an instrument).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("cimlab.progress")

#: default seconds between two periodic progress lines
DEFAULT_INTERVAL_S = 30.0


@dataclass
class ProgressSettings:
    """Process-wide settings of the periodic lines: ``lines`` (print them on stderr) and
    ``interval_s`` (at most one line per bar this often; 0: at every update)."""

    lines: bool = False
    interval_s: float = DEFAULT_INTERVAL_S


SETTINGS = ProgressSettings()


def configure(lines: bool, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """Print periodic progress lines on stderr (``lines``) every ``interval_s`` [s]."""
    if not interval_s >= 0:
        raise ValueError(f"interval_s must be >= 0 s, got {interval_s!r}")
    SETTINGS.lines = bool(lines)
    SETTINGS.interval_s = float(interval_s)


def hms(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS``."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def duration(seconds: float) -> str:
    """A duration with a readable unit: ``12.0 s``, ``3.5 min``, ``1.20 h``, ``2.0 d``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 86400:.1f} d"


class Progress:
    """One progress bar: tqdm (``enabled`` and stderr a terminal), periodic lines on stderr
    (``enabled`` and :data:`SETTINGS` ``.lines``) and INFO records in the log (always, at the
    same pace). ``status``: extra fields of a line (``{"rows": 1200, "instrument": "1.2 h"}``),
    called only when a line is written."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True, unit: str = "it",
                 status: Callable[[], dict[str, Any]] | None = None):
        from tqdm.auto import tqdm

        self.total = int(total)
        self.desc = desc
        self.n = 0
        self.status = status
        self.lines = enabled and SETTINGS.lines
        self.interval_s = SETTINGS.interval_s
        # disable=None: tqdm switches itself off when stderr is not a terminal (a log file)
        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False,
                         disable=None if enabled else True)
        self._t0 = time.monotonic()
        self._last: float | None = None
        self._closed = False
        self._report(force=True)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += int(n)
        self._bar.update(n)
        self._report()

    def close(self) -> None:
        """Close the bar; a last line when anything was done since the previous one."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        self._report(force=self.n > 0, final=True)

    def line(self) -> str:
        """The progress line as it is now."""
        elapsed = time.monotonic() - self._t0
        pct = f" ({100.0 * self.n / self.total:.0f} %)" if self.total else ""
        parts = [f"{self.desc} {self.n}/{self.total}{pct}"]
        if self.status is not None:
            parts += [f"{k} {v}" for k, v in self.status().items()]
        parts.append(f"elapsed {hms(elapsed)}")
        if 0 < self.n < self.total:
            parts.append(f"ETA {hms(elapsed / self.n * (self.total - self.n))}")
        return ", ".join(parts)

    def _report(self, force: bool = False, final: bool = False) -> None:
        now = time.monotonic()
        if not force and self._last is not None and now - self._last < self.interval_s:
            return
        if not force and self._last is None and now - self._t0 < self.interval_s:
            return
        if not (self.lines or log.isEnabledFor(logging.INFO)):
            return
        self._last = now
        text = self.line() + (" done" if final and self.n >= self.total else "")
        log.info("%s", text)
        if self.lines:
            print(f"cimlab progress: {text}", file=sys.stderr, flush=True)


__all__ = ["DEFAULT_INTERVAL_S", "SETTINGS", "Progress", "ProgressSettings", "configure",
           "duration", "hms"]
