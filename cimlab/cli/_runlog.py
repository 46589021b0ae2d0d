"""Unattended runs of the commands that drive instruments: the run log and periodic progress.

``add_log_flags`` gives a command ``--log FILE`` / ``--no-log`` / ``--log-level`` and
``--progress-lines`` / ``--progress-every``; ``run_log`` wraps the command's work:

* the log (standard :mod:`logging`, the ``cimlab`` logger tree) goes to FILE, appended (a
  resumed run continues its log), default ``<store>.log`` next to the store. Each record is
  flushed as it is written (a killed run keeps its log up to its last line). DEBUG (the
  default level) holds every SCPI write and read with the instrument's role and its time
  (``cimlab.scpi``, long messages cut with their length); INFO the station's instruments,
  each step started and committed, each resume, progress lines and the command's end;
  WARNING/ERROR what went wrong. A message longer than :data:`LOG_LINE_MAX` characters is cut
  (with its length). Warnings also still reach stderr; nothing goes to stdout (``--json``).
* periodic progress lines on stderr (:mod:`cimlab.procedures.progress`) when stdout is not a
  terminal (a batch job, ``> out.txt``) or with ``--progress-lines``; ``-q`` turns them off.

Importing this module imports neither NumPy nor the instruments.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cimlab.cli._common import file_path

#: longest message written to the log [characters]; longer ones are cut, with their length
LOG_LINE_MAX = 2000
#: levels of ``--log-level``
LOG_LEVELS: dict[str, int] = {"debug": logging.DEBUG, "info": logging.INFO,
                              "warning": logging.WARNING}
#: default seconds between periodic progress lines (``--progress-every``)
PROGRESS_EVERY_S = 30.0

log = logging.getLogger("cimlab.cli")


def default_log_path(store: str | os.PathLike) -> Path:
    """The log kept next to a store: ``<store>.log`` (``data/chip01.h5.log``)."""
    p = Path(store)
    return p.with_name(p.name + ".log")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text[:40]!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text[:40]}")
    return value


def add_log_flags(parser: argparse.ArgumentParser, default: str) -> None:
    """Add the run-log and progress flags; ``default`` says where the log goes by default."""
    g = parser.add_argument_group(
        "unattended runs (docs/procedures.md, 'Unattended runs')",
        "A log of what was sent and measured, and progress lines for runs nobody watches.")
    g.add_argument("--log", type=file_path, default=None, metavar="FILE",
                   help=f"log file, appended (default: {default})")
    g.add_argument("--no-log", action="store_true", help="write no log file")
    g.add_argument("--log-level", choices=tuple(LOG_LEVELS), default="debug",
                   help="debug: every SCPI message with its time; info: steps, resumes and "
                   "progress; warning: problems only (default %(default)s)")
    g.add_argument("--progress-lines", action="store_true",
                   help="periodic progress lines on stderr even when stdout is a terminal "
                   "(they are on by default when it is not)")
    g.add_argument("--progress-every", type=_seconds, default=PROGRESS_EVERY_S, metavar="S",
                   help="seconds between progress lines (default %(default)g; 0: every update)")


class _Formatter(logging.Formatter):
    """Timestamped lines; a message over :data:`LOG_LINE_MAX` characters is cut."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        n = len(record.message)
        if n > LOG_LINE_MAX:
            record = copy.copy(record)
            record.message = f"{record.message[:LOG_LINE_MAX]}... ({n} characters)"
        return super().formatMessage(record)


#: ``extra`` of a record meant for the log file only (stderr already says it another way)
FILE_ONLY = {"stderr": False}


def _not_file_only(record: logging.LogRecord) -> bool:
    return getattr(record, "stderr", True)


def _stdout_is_terminal(args: argparse.Namespace) -> bool:
    stream = getattr(args, "_json_stdout", None) or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def run_log(args: argparse.Namespace, default: str | os.PathLike | None,
            keep_if: str | os.PathLike | None = None) -> Iterator[Path | None]:
    """The command's log and progress settings while its work runs (module docstring).

    ``default``: the log file without ``--log`` (None: no log unless ``--log``);
    ``keep_if``: a default log is removed again when this path does not exist at the end (a
    plan refused before its store was created writes nothing). Yields the log path or None.
    """
    from cimlab.procedures import progress

    quiet = bool(getattr(args, "quiet", False))
    lines = bool(getattr(args, "progress_lines", False)) or (
        not quiet and not _stdout_is_terminal(args))
    previous = (progress.SETTINGS.lines, progress.SETTINGS.interval_s)
    progress.configure(lines, getattr(args, "progress_every", PROGRESS_EVERY_S))
    given = getattr(args, "log", None)
    path = None if getattr(args, "no_log", False) else (
        Path(given) if given is not None else None if default is None else Path(default))
    root = logging.getLogger("cimlab")
    level_before = root.level
    handlers: list[logging.Handler] = []
    made: list[Path] = []
    existed = path is not None and path.exists()
    try:
        if path is not None:
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    made.append(parent)
            # FileHandler flushes after every record: a killed run keeps its log
            fh = logging.FileHandler(path, mode="a", encoding="utf-8")
            fh.setFormatter(_Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
            fh.setLevel(LOG_LEVELS[getattr(args, "log_level", "debug")])
            handlers.append(fh)
            # warnings still reach stderr as they did before the log existed (never stdout)
            err = logging.StreamHandler(sys.stderr)
            err.setLevel(logging.WARNING)
            err.setFormatter(_Formatter("cimlab: %(levelname)s: %(message)s"))
            err.addFilter(_not_file_only)
            handlers.append(err)
            for h in handlers:
                root.addHandler(h)
            root.setLevel(min(h.level for h in handlers))
    except BaseException:
        progress.configure(*previous)
        raise
    t0 = time.monotonic()
    argv = getattr(args, "_argv", None)
    from cimlab import __version__

    log.info("cimlab %s %s: started (pid %d, log %s)", __version__,
             " ".join(argv) if argv is not None else getattr(args, "command", "?"),
             os.getpid(), path)
    try:
        yield path
    except KeyboardInterrupt:
        log.warning("interrupted after %.1f s (outputs switched off; committed steps kept)",
                    time.monotonic() - t0, extra=FILE_ONLY)
        raise
    except BaseException as exc:
        log.error("stopped after %.1f s by %s: %s", time.monotonic() - t0,
                  type(exc).__name__, exc, extra=FILE_ONLY)
        raise
    else:
        log.info("finished after %.1f s host time", time.monotonic() - t0)
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(level_before)
        progress.configure(*previous)
        if (path is not None and given is None and keep_if is not None
                and not Path(keep_if).exists() and not existed):
            path.unlink(missing_ok=True)
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
