"""The HTML of the live page: plain HTML5 (a ``<meta http-equiv="refresh">`` reloads it; the
progress bars are ``<progress>`` elements; no JavaScript)."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from cimlab.watch.status import RunStatus, StoreStatus

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
progress { width: 10em; }
.warn { color: #a0400a; }
.status-running { color: #0a5fa0; } .status-completed { color: #2a7a2a; }
.status-aborted { color: #a0400a; }
img { max-width: 48%; margin: 0.3em; border: 1px solid #eee; }
"""


def duration_text(seconds: float | None) -> str:
    """A duration for people: ``"42 s"``, ``"12.5 min"``, ``"3.2 h"``, ``"4.1 d"``."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _progress(r: RunStatus) -> str:
    if r.fraction is None:
        return f"{r.steps_done} steps (plan size not recorded)"
    return (f'<progress max="{r.steps_planned}" value="{r.steps_done}"></progress> '
            f"{r.steps_done} / {r.steps_planned} steps ({100 * r.fraction:.0f}%)")


def _run_row(r: RunStatus) -> str:
    rows = ", ".join(f"{t}: {n:,}" for t, n in r.rows.items())
    name = escape(r.experiment or r.kind)
    return (
        f"<tr><td>{name}</td><td>{escape(r.kind)}</td>"
        f'<td class="status-{escape(r.status)}">{escape(r.status)}</td>'
        f"<td>{_progress(r)}</td><td>{escape(r.last_step)}</td>"
        f'<td class="num">{duration_text(r.instrument_time_s)}</td>'
        f'<td class="num">{duration_text(r.host_time_s)}</td>'
        f"<td>{escape(rows)}</td><td><code>{escape(r.uid)}</code></td></tr>"
    )


def render(status: StoreStatus, plots: dict[str, list[str]], refresh_s: float,
           errors: list[str] | None = None) -> str:
    """The page for one poll. ``plots`` maps a run uid to the names of its PNG files (served
    under ``/plots/``); ``errors``: problems of the last poll (shown as warnings)."""
    warnings = [*(errors or []), *status.warnings,
                *(f"{r.experiment or r.uid}: {w}" for r in status.runs for w in r.warnings)]
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{max(1, round(refresh_s))}">'
            f"<title>cimlab watch: {escape(status.path)}</title><style>{_STYLE}</style></head>")
    parts = [head, "<body>", f"<h1>cimlab watch: <code>{escape(status.path)}</code></h1>",
             f"<p>{len(status.runs)} run(s); instrument time in total "
             f"{duration_text(status.instrument_time_s)}; "
             f"store last written {escape(_utc(status.modified_unix))}; "
             f"polled {escape(_utc(status.polled_unix))} (every {refresh_s:g} s; "
             "read-only)</p>"]
    if warnings:
        parts.append('<h2 class="warn">Warnings</h2><ul class="warn">')
        parts += [f"<li>{escape(w)}</li>" for w in warnings]
        parts.append("</ul>")
    parts.append("<h2>Progress</h2><table><tr><th>experiment</th><th>kind</th><th>status</th>"
                 "<th>progress (committed steps)</th><th>last step</th><th>instrument time</th>"
                 "<th>host time</th><th>committed rows</th><th>uid</th></tr>")
    parts += [_run_row(r) for r in status.runs]
    parts.append("</table>")
    shown = [(r, plots.get(r.uid, [])) for r in reversed(status.runs) if plots.get(r.uid)]
    if shown:
        parts.append("<h2>Latest plots</h2>")
        for r, names in shown:
            parts.append(f"<h3>{escape(r.experiment or r.kind)} <code>{escape(r.uid)}</code>"
                         "</h3><div>")
            parts += [f'<img src="/plots/{quote(n)}" alt="{escape(n)}">' for n in names]
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _utc(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
