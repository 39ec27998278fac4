"""Build a report folder from run directories: report.html, figures/*.png|svg, data/*.parquet, report.json.

Everything is written into a hidden folder inside ``out`` and moved into place at the end, so a failure
leaves no half-written report. Reads only the recorded tables, manifests and (for phi) the adapter
checkpoints through safetensors' numpy API: torch is never imported.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lor2c_probe.errors import StorageError
from lor2c_probe.record.outputs import check_output, mark, publish, writing
from lor2c_probe.record.runs import load_runs
from lor2c_probe.report.banner import run_warnings
from lor2c_probe.report.sections import Fig, Options, Section, Table, build_sections

MARKER = "report.json"
DPI = 150


@dataclass(frozen=True)
class ReportResult:
    html: Path
    sections: dict[str, str | None]  # id -> None when drawn, else the note saying why not
    figures: list[str]


def build_report(paths: list[Path], out: Path, *, title: str | None = None, intro: str | None = None, options: Options = Options(),
                 interactive: bool = True, groups: dict[Path, str] | None = None, overwrite: bool = False) -> ReportResult:
    from importlib.metadata import version

    from lor2c_probe.report.html import render

    rep = check_output(out, "report", overwrite, inputs=paths)
    runs = load_runs(paths, groups)
    sections = build_sections(runs, options)
    title = title or ("Report: " + ", ".join(r.label for r in runs) if len(runs) <= 4 else f"Report over {len(runs)} runs")
    out.parent.mkdir(parents=True, exist_ok=True)
    # drawn beside the folder first: a failure leaves the old report in place, and the old one goes only once the new is ready
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.partial-") as tmp:
        d = Path(tmp)
        try:
            files = _draw(sections, d)
        except OSError as e:  # e.g. a full disk while saving a figure
            raise StorageError(f"cannot write the report beside {out}: {e.strerror or e}") from e
        warnings = run_warnings(runs)
        page = render(sections, files, title=title, intro=intro, n_runs=len(runs), interactive=interactive, version=version("lor2c-probe"),
                      warnings=warnings)
        (d / "report.html").write_text(page, encoding="utf-8")
        status = {s.id: s.note for s in sections}
        meta = {"title": title, "runs": {r.label: str(r.path) for r in runs}, "groups": {r.label: r.group for r in runs},
                "interactive": interactive, "sections": {k: ("drawn" if v is None else f"not drawn: {v}") for k, v in status.items()},
                "figures": sorted(files), "warnings": warnings}
        (d / MARKER).write_text(json.dumps(mark(meta), indent=2) + "\n")
        with writing(out, rep, "report folder"):
            publish(d, out)
    return ReportResult(out / "report.html", status, sorted(files))


def _draw(sections: list[Section], d: Path) -> dict[str, dict[str, Path]]:
    files = _write_figures(sections, d / "figures")
    _write_data(sections, d / "data")
    return files


def _figs(sections: list[Section]) -> list[Fig]:
    return [b for s in sections if s.note is None for b in s.blocks if isinstance(b, Fig)]


def _write_figures(sections: list[Section], folder: Path) -> dict[str, dict[str, Path]]:
    from matplotlib import rc_context

    from lor2c_probe.plots.report import STYLE

    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    for f in _figs(sections):
        if f.stem in files:
            raise RuntimeError(f"two figures named {f.stem}")
        with rc_context(STYLE):
            fig = f.draw()
            files[f.stem] = {}
            for ext in ("png", "svg"):
                p = folder / f"{f.stem}.{ext}"
                fig.savefig(p, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
                files[f.stem][ext] = p
    return files


def _write_data(sections: list[Section], folder: Path) -> None:
    tables = [b for s in sections if s.note is None for b in s.blocks if isinstance(b, Table) and b.data]
    if tables:
        folder.mkdir(parents=True, exist_ok=True)
    for t in tables:
        frame = (t.data_frame if t.data_frame is not None else t.frame).copy()
        frame.columns = [str(c) for c in frame.columns]
        frame.to_parquet(folder / f"{t.data}.parquet", index=False)
