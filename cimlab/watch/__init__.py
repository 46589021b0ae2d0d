"""``cimlab watch``: a live, read-only web page of a store for long campaigns (layer 10).

Example::

    from cimlab.watch import Watcher, WatchServer
    server = WatchServer(Watcher("data/chip01.h5", poll_s=5), "127.0.0.1", 8765)
    server.serve_forever()      # http://127.0.0.1:8765/ ; /status.json ; /plots/<name>.png

Modules: :mod:`~cimlab.watch.status` (what is read from the store: progress per run from its
step log), :mod:`~cimlab.watch.page` (the HTML, no JavaScript), :mod:`~cimlab.watch.server`
(``http.server``, loopback only). Plots are the report's (:mod:`cimlab.procedures.report`).
"""

from cimlab.watch.server import Watcher, WatchServer, check_loopback
from cimlab.watch.status import RunStatus, StoreStatus, planned_steps, read_status

__all__ = ["RunStatus", "StoreStatus", "WatchServer", "Watcher", "check_loopback",
           "planned_steps", "read_status"]
