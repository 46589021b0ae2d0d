"""Import external measurements: kept for ``from cimlab.procedures import importer``; the code
lives in the package :mod:`cimlab.procedures.importers` (tidy, techc, techa, bake, units)."""

from cimlab.procedures.importers import *  # noqa: F403
from cimlab.procedures.importers import __all__  # noqa: F401
