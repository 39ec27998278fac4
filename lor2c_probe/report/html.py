"""One self-contained HTML page: every user-supplied string escaped, figures inlined as SVG data URIs, plotly.js
inlined once in the head (interactive mode) or not at all (static mode). No network references."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from lor2c_probe.report.sections import Details, Fig, Pre, Section, Table

CSS = """
body{font:15px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1.2em;color:#1d1d1f}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav ol{columns:2;font-size:.95em}.banner{background:#fde8e8;border:2px solid #c0392b;color:#7b1d14;padding:.7em 1em;margin:1em 0;font-weight:600}
figure{margin:1.2em 0}figcaption{font-size:.9em;color:#444}
figure img{max-width:100%;height:auto;border:1px solid #eee}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;white-space:nowrap}th{background:#f5f5f7}
td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;color:#444;padding:.3em 0}
pre{background:#f7f7f9;padding:.8em;overflow-x:auto;font-size:.82em;white-space:pre-wrap}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}.meta{color:#555;font-size:.9em}
.files{font-size:.85em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "" if x != x else f"{x:.4g}"
    return x


def _table(t: Table) -> str:
    df = t.frame.copy()
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_float_dtype(df[c]):
            df[c] = df[c].map(_fmt)
    body = df.to_html(index=False, escape=True, na_rep="", border=0)
    return (f"<p class=\"meta\">{_e(t.caption)}</p>" if t.caption else "") + body


def _figure(f: Fig, files: dict[str, dict[str, Path]], interactive: bool) -> str:
    paths = files[f.stem]
    if interactive and f.plotly is not None:
        import plotly.io as pio

        body = pio.to_html(f.plotly(), full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})
    else:  # the SVG: vector, and about a third of the PNG's bytes; inside <img> so its ids cannot collide
        data = base64.b64encode(paths["svg"].read_bytes()).decode()
        body = f"<img alt=\"{_e(f.caption)}\" src=\"data:image/svg+xml;base64,{data}\">"
    links = " · ".join(f"<a href=\"figures/{_e(p.name)}\">{ext.upper()}</a>" for ext, p in paths.items())
    return f"<figure>{body}<figcaption>{_e(f.caption)} <span class=\"files\">({links})</span></figcaption></figure>"


def render(sections: list[Section], files: dict[str, dict[str, Path]], *, title: str, intro: str | None, n_runs: int,
           interactive: bool, version: str, warnings: list[str] | None = None) -> str:
    parts = []
    drawn = [s for s in sections if s.note is None]
    for s in sections:
        parts.append(f"<section id=\"{_e(s.id)}\"><h2>{_e(s.title)}</h2>")
        if s.note is not None:
            parts.append(f"<p class=\"note\">Not drawn: {_e(s.note)}.</p></section>")
            continue
        for b in s.blocks:
            if isinstance(b, str):
                parts.append(f"<p>{_e(b)}</p>")
            elif isinstance(b, Pre):
                parts.append(f"<pre>{_e(b.text)}</pre>")
            elif isinstance(b, Table):
                parts.append(_table(b))
            elif isinstance(b, Fig):
                parts.append(_figure(b, files, interactive))
            elif isinstance(b, Details):
                parts.append(f"<details><summary>{_e(b.summary)}</summary><pre>{_e(b.text)}</pre></details>")
        parts.append("</section>")
    toc = "".join(f"<li><a href=\"#{_e(s.id)}\">{_e(s.title)}</a>{' (not drawn)' if s.note else ''}</li>" for s in sections)
    script = ""
    if interactive and any(isinstance(b, Fig) and b.plotly is not None for s in drawn for b in s.blocks):
        from plotly.offline import get_plotlyjs

        script = f"<script type=\"text/javascript\">{get_plotlyjs()}</script>"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style>{script}</head><body>")
    intro_html = f"<p>{_e(intro)}</p>" if intro else ""
    header = (f"<header><h1>{_e(title)}</h1>{intro_html}<p class=\"meta\">{n_runs} run(s); generated {when} by lor2c-probe {_e(version)} "
              f"from the recorded tables only. Figures are also saved as PNG and SVG under figures/.</p><nav><ol>{toc}</ol></nav></header>")
    banner = "".join(f"<div class=\"banner\" role=\"alert\">{_e(w)}</div>" for w in warnings or [])
    return head + header + banner + "".join(parts) + "</body></html>\n"
