"""``cimlab watch``: a live page of a store for a lab to leave open during a long campaign.

Heavy imports happen inside the handler; torch is never imported.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(sub: Any) -> None:
    """Add ``watch`` to the ``cimlab`` command."""
    p = sub.add_parser(
        "watch",
        help="live web page of a store: progress, instrument time, plots, warnings",
        description="Serve a web page about a store on this computer (loopback only) while a "
        "campaign writes to it: progress of each experiment (committed steps against the "
        "plan), instrument and host time, committed rows, the report's latest plots, and "
        "warnings (aborted or stalled runs, resumes, failed plots). The page reloads itself "
        "and changes as steps commit; /status.json has the same data as JSON. The store is "
        "only read (opened read-only, without taking the HDF5 file lock, so the watch never "
        "blocks a campaign from opening it). Stop with Ctrl-C. See docs/watch.md.",
    )
    p.add_argument("file", help="store file (e.g. data/chip01.h5)")
    p.add_argument("--port", type=int, default=8765,
                   help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to listen on (127.0.0.1, ::1 or localhost; other "
                   "addresses are refused)")
    p.add_argument("--poll", type=float, default=5.0, metavar="S",
                   help="seconds between reads of the store (default 5)")
    p.add_argument("--refresh", type=float, default=10.0, metavar="S",
                   help="seconds between page reloads in the browser (default 10)")
    p.add_argument("--no-plots", action="store_true", help="progress and warnings only")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request")
    p.set_defaults(func=_watch)


def _watch(args: argparse.Namespace) -> int:
    # A reader that never writes needs no file lock. HDF5 reads this variable once, when h5py
    # is first imported (the CLI has not imported it yet): without the lock the watch can never
    # keep a campaign from opening the store for writing.
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    from cimlab.errors import ConfigError
    from cimlab.watch import check_loopback

    if not 1 <= args.port <= 65535 and args.port != 0:
        raise ConfigError("cimlab watch", "--port", "a TCP port 1-65535 (or 0: any free)",
                          args.port)
    if args.poll <= 0 or args.refresh <= 0:
        raise ConfigError("cimlab watch", "--poll/--refresh", "seconds > 0",
                          f"{args.poll}/{args.refresh}")
    check_loopback(args.host)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; 130 then (the shell's code for an interrupt)."""
    from cimlab.errors import ConfigError
    from cimlab.store import Store
    from cimlab.watch import Watcher, WatchServer

    Store.open(args.file, "r").close()  # a missing or foreign file: one line, now
    watcher = Watcher(args.file, poll_s=args.poll, plots=not args.no_plots)
    try:
        server = WatchServer(watcher, args.host, args.port, refresh_s=args.refresh,
                             verbose=args.verbose)
    except OSError as exc:
        watcher.close()
        raise ConfigError("cimlab watch", "--port", "a free port (or --port 0)",
                          f"{args.port}: {exc.strerror or exc}") from None
    try:  # "Ctrl-C stops" is printed inside: from then on an interrupt closes cleanly
        print(f"watching {args.file} at {server.url} (read-only; Ctrl-C stops)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # the way to stop it, still an interrupt: exit 130
        print("stopped")
        return 130
    finally:
        server.server_close()
    return 0
