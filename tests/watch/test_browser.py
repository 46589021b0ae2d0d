"""``cimlab watch`` in a real headless browser (Debian's chromium). Skipped where chromium is
not installed; install it with ``apt-get install -y chromium`` (README, "Tests")."""

from __future__ import annotations

import shutil
import subprocess
import threading

import numpy as np
import pytest

from cimlab.watch import Watcher, WatchServer
from tests.watch.test_watch import PLANNED, _commit_steps

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install -y chromium)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=180)


def test_page_renders_with_plots_in_headless_chromium(tmp_path):
    path = tmp_path / "bake.h5"
    _commit_steps(path, [0, 1, 2])
    server = WatchServer(Watcher(path, poll_s=0.0), "127.0.0.1", 0, refresh_s=60)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dom = _chromium("--dump-dom", server.url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert f"6 / {PLANNED} steps" in dom.stdout and "<progress" in dom.stdout
        shot = tmp_path / "page.png"
        res = _chromium(f"--screenshot={shot}", "--window-size=1200,1400", server.url)
        assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
        plot_hits = {p: n for p, n in server.requests.items() if p.startswith("/plots/")}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert plot_hits, f"the browser fetched no plot; requests: {dict(server.requests)}"
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (1400, 1200)
    assert float(np.std(img[..., :3])) > 0.05      # not a blank page
