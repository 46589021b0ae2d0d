"""Errors of the run store."""

from __future__ import annotations

from cimlab.errors import CimlabError, ConfigError


class StoreError(ConfigError):
    """A store file is unreadable, corrupt, not a cimlab store, or used against its rules.

    A :class:`~cimlab.errors.ConfigError` (so ``except ConfigError`` catches it too): the message
    names the file, the place inside it (``field``: an HDF5 path or an argument) and what was
    expected. Raised before anything is written.
    """


class DiskFullError(CimlabError):
    """The store's disk has too little free space for the next step; nothing of that step was
    committed, so a re-run after freeing space resumes at it."""

    def __init__(self, path: object, step: int, last_step: str | None, free: int, need: int):
        self.path = str(path)
        self.step = step
        self.last_step = last_step
        self.free_bytes = free
        self.needed_bytes = need
        after = (f"nothing after step {step - 1} ('{last_step}') was committed" if last_step
                 else "nothing of this run was committed")
        super().__init__(
            f"{self.path}: disk full at step {step} ({_size(free)} free, {_size(need)} needed); "
            f"{after}; free space and re-run the same command to resume")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover
