"""Errors of the run store."""

from __future__ import annotations

from cimlab.errors import ConfigError


class StoreError(ConfigError):
    """A store file is unreadable, corrupt, not a cimlab store, or used against its rules.

    A :class:`~cimlab.errors.ConfigError` (so ``except ConfigError`` catches it too): the message
    names the file, the place inside it (``field``: an HDF5 path or an argument) and what was
    expected. Raised before anything is written.
    """
