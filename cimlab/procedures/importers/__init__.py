"""Import external measurements into a store (docs/data-format.md, "Importing").

Formats: ``tidy`` (:class:`TidyFormat`: any CSV/TSV, relaxation reads -> run ``imported``,
or bakes -> run ``bake_retention``), ``techc`` (:func:`import_techc`), ``techa-bake``
(:func:`import_techa_bake` -> ``bake_retention``), ``tsdata`` (:func:`import_tsdata`:
read-noise time series -> run ``read_noise_series``, table ``samples``). Units by name with
Pint (:mod:`.units`). Errors name the file, the line (1-based, as an editor shows it) and the
column, and what was expected; nothing is written before the whole file was checked.
Importing the same file with the same mapping twice returns the existing run (the plan holds
the file's SHA-256 and the mapping), and an import that was killed resumes.
"""

from cimlab.procedures.importers._table import sha256_file
from cimlab.procedures.importers._write import (
    BAKE_KIND,
    KIND,
    OUTLIERS,
    READS,
    SAMPLES,
    SERIES_KIND,
    ImportResult,
)
from cimlab.procedures.importers.bake import BAKE_COLUMNS, build_bake
from cimlab.procedures.importers.techa import (
    SERIES_COLUMNS,
    TECHA_BAKE_COLUMNS,
    import_techa_bake,
    import_tsdata,
    read_techa_bake,
    read_tsdata,
)
from cimlab.procedures.importers.techc import (
    TECHC_COLUMNS,
    TECHC_RANGES,
    import_techc,
    read_techc,
)
from cimlab.procedures.importers.tidy import (
    READ_COLUMNS,
    ROOM_TEMPERATURE_K,
    TidyFormat,
    import_tidy,
    read_tidy,
    read_tidy_bake,
)

#: The formats ``cimlab import --format`` accepts.
FORMATS = ("tidy", "techc", "techa-bake", "tsdata")

__all__ = [
    "BAKE_COLUMNS", "BAKE_KIND", "FORMATS", "KIND", "OUTLIERS", "READS", "READ_COLUMNS",
    "ROOM_TEMPERATURE_K", "SAMPLES", "SERIES_COLUMNS", "SERIES_KIND", "TECHA_BAKE_COLUMNS",
    "TECHC_COLUMNS", "TECHC_RANGES", "ImportResult", "TidyFormat", "build_bake",
    "import_techa_bake", "import_techc", "import_tidy", "import_tsdata", "read_techa_bake",
    "read_techc", "read_tidy", "read_tidy_bake", "read_tsdata", "sha256_file",
]
