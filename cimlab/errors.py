"""Exceptions shared by every layer of cimlab.

Every error names what was wrong and, where it can, how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class CimlabError(Exception):
    """Base class of every error cimlab raises on purpose."""


#: Longest echo of an offending value in an error message [characters].
MAX_ECHO_CHARS = 200


def _shorten(text: str) -> str:
    """``text`` cut to :data:`MAX_ECHO_CHARS` (a 130 MB array is not echoed into one line)."""
    if len(text) <= MAX_ECHO_CHARS:
        return text
    return f"{text[:MAX_ECHO_CHARS]}... ({len(text)} characters)"


class ConfigError(CimlabError, ValueError):
    """A file (station, plan, profile, model, store) holds a value cimlab cannot accept.

    The message names the file, the field (dotted path) and what was expected.
    """

    def __init__(self, source: str | Path | None, field: str, expected: str, got: object = None):
        self.source = str(source) if source is not None else "<input>"
        self.field = field
        self.expected = expected
        self.got = got
        got_text = "" if got is None else f", got {_shorten(repr(got))}"
        super().__init__(f"{self.source}: field '{field}': expected {expected}{got_text}")


class LimitError(CimlabError, ValueError):
    """A requested value lies outside a safety or instrument limit. Nothing was sent."""


class InsufficientDataError(CimlabError, ValueError):
    """A store holds too little data for a fit or a report statistic. The message says what
    is missing and what to measure (e.g. "relaxation fit needs reads at 2 or more time
    points: measure with times_s of 2 or more entries")."""


class InstrumentError(CimlabError, RuntimeError):
    """An instrument reported an error (SCPI error queue) or answered unexpectedly."""
