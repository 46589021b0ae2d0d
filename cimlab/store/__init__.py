"""HDF5 run store (layer 5): one file per campaign, resumable runs, tidy pandas tables.

Example::

    from cimlab.store import Store
    with Store.open("data/chip01.h5", mode="a") as store:
        run = store.begin_run(kind="read_fluctuation", plan=plan, snapshot=station.snapshot(),
                              seeds={"procedure": 7}, resume=True)
        for level in levels:
            step = f"level-{level:02d}"
            if step in run.completed_steps:
                continue                      # measured before a crash: kept, not repeated
            run.append("reads", {"cell": cells, "level": level, "time_s": t, "g_siemens": g})
            run.complete_step(step)
        run.finish("completed")
        store.runs(); store.run(run.uid).table("reads")

The table contract (column names per run kind) is in docs/architecture.md section 5; the file
layout and the crash-safety protocol in docs/data-format.md.
"""

from cimlab.store.errors import DiskFullError, StoreError
from cimlab.store.run import ABORTED, COMPLETED, RUNNING, Run
from cimlab.store.store import FORMAT, FORMAT_VERSION, Store

__all__ = [
    "ABORTED",
    "COMPLETED",
    "FORMAT",
    "FORMAT_VERSION",
    "RUNNING",
    "DiskFullError",
    "Run",
    "Store",
    "StoreError",
]
