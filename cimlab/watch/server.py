"""The HTTP server of ``cimlab watch``: Python's ``http.server``, loopback only, read-only.

Routes: ``/`` (the page, reloading itself every ``refresh_s``), ``/status.json`` (the same
data as JSON), ``/plots/<name>.png`` (plots of the report, drawn into a private temporary
folder). Only GET and HEAD exist; anything else is answered 501 by ``http.server``. Each request
polls the store at most every ``poll_s``; plots of a run are redrawn only when its committed
steps change.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cimlab.errors import ConfigError
from cimlab.watch.page import render
from cimlab.watch.status import RunStatus, StoreStatus, read_status

#: Loopback names accepted besides literal loopback addresses.
LOCAL_NAMES = ("localhost",)


def check_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address (127.0.0.0/8, ::1, "localhost"); otherwise
    raise :class:`ConfigError`: the page shows measurements and must not reach the network."""
    if host in LOCAL_NAMES:
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ConfigError("cimlab watch", "--host", "a loopback address (127.0.0.1, ::1 or "
                      "localhost): the page is for this computer only; reach it from elsewhere "
                      "through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT host)", host)


class Watcher:
    """Polls one store (read-only) and keeps the latest status and plots."""

    def __init__(self, store_path: str | os.PathLike, *, poll_s: float = 5.0,
                 plots: bool = True):
        self.store_path = Path(store_path)
        self.poll_s = float(poll_s)
        self.plots_enabled = plots
        self.plot_dir = Path(tempfile.mkdtemp(prefix="cimlab-watch-"))
        self._lock = threading.Lock()
        self._status: StoreStatus | None = None
        self._polled = -float("inf")
        self._plots: dict[str, tuple[tuple, list[str], list[str]]] = {}
        self.errors: list[str] = []

    def close(self) -> None:
        """Remove the plot folder."""
        shutil.rmtree(self.plot_dir, ignore_errors=True)

    # ----------------------------------------------------------------- polling
    def _draw(self, run: Any, st: RunStatus) -> None:
        key = (st.status, st.steps_done, st.resumes)
        cached = self._plots.get(st.uid)
        if cached is not None and cached[0] == key:
            st.warnings.extend(cached[2])
            return
        names: list[str] = []
        notes: list[str] = []
        if self.plots_enabled and st.steps_done:
            from cimlab.procedures.report import summarize_run

            folder = self.plot_dir / f"{st.uid}-{st.steps_done}-{st.resumes}"
            try:
                rep = summarize_run(run, out_dir=folder)
                notes = [n for n in rep.notes if "figures cover the rows" not in n]
                for p in rep.plots:
                    name = f"{folder.name}--{Path(p).name}"
                    os.replace(p, self.plot_dir / name)
                    names.append(name)
            except Exception as exc:  # a plot must never take the page down
                notes = [f"plots failed: {type(exc).__name__}: {exc}"]
            shutil.rmtree(folder, ignore_errors=True)
            if cached is not None:
                for old in cached[1]:
                    (self.plot_dir / old).unlink(missing_ok=True)
        self._plots[st.uid] = (key, names, notes)
        st.warnings.extend(notes)

    def poll(self, force: bool = False) -> StoreStatus:
        """The store's status, re-read if ``poll_s`` has passed (or ``force``). A store that
        cannot be read right now (a writer mid-flush) keeps the last good status and adds an
        error line."""
        with self._lock:
            now = time.monotonic()
            if self._status is not None and not force and now - self._polled < self.poll_s:
                return self._status
            try:
                self._status = read_status(self.store_path, visit=self._draw)
                self.errors = []
            except Exception as exc:
                self.errors = [f"store could not be read at the last poll ({exc}); showing "
                               "the previous state"]
                if self._status is None:
                    self._status = StoreStatus(str(self.store_path), time.time(), 0.0, False,
                                               [], [])
            self._polled = now
            return self._status

    def plot_names(self) -> dict[str, list[str]]:
        return {uid: v[1] for uid, v in self._plots.items()}

    def page(self, refresh_s: float) -> str:
        status = self.poll()
        return render(status, self.plot_names(), refresh_s, self.errors)


class _Handler(BaseHTTPRequestHandler):
    server: WatchServer
    server_version = "cimlab-watch"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.server.requests[path] += 1
        w = self.server.watcher
        if path in ("/", "/index.html"):
            body = w.page(self.server.refresh_s).encode("utf-8")
            return self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
        if path == "/status.json":
            status = w.poll()
            doc = {**status.to_json(), "errors": w.errors, "plots": w.plot_names()}
            return self._send(HTTPStatus.OK, json.dumps(doc).encode("utf-8"),
                              "application/json")
        if path.startswith("/plots/"):
            name = path[len("/plots/"):]
            known = {n for names in w.plot_names().values() for n in names}
            if name in known and (w.plot_dir / name).is_file():
                return self._send(HTTPStatus.OK, (w.plot_dir / name).read_bytes(), "image/png")
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    do_HEAD = do_GET


class WatchServer(ThreadingHTTPServer):
    """A threading HTTP server for one :class:`Watcher` on a loopback address."""

    daemon_threads = True

    def __init__(self, watcher: Watcher, host: str = "127.0.0.1", port: int = 8765, *,
                 refresh_s: float = 10.0, verbose: bool = False):
        host = check_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.watcher = watcher
        self.refresh_s = float(refresh_s)
        self.verbose = verbose
        #: Requests served per path (a count; what a browser fetched).
        self.requests: Counter[str] = Counter()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.watcher.close()
