"""The one output-folder guard: a command replaces only an output it can prove it wrote.

Proof is the kind's marker file (``manifest.json``, ``report.json``, ``study.json``, ``gradients.json``, ...)
carrying the tool's signature, and a folder holding nothing but what that kind writes. Anything else is
refused, naming the folder and the first entry that is not ours; so are ``/``, the home folder, the
working folder and its ancestors. A replaced output that holds training runs is moved aside (renamed to
``<name>.replaced-<UTC time>`` beside it), never deleted; other replaced outputs are deleted.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterator

from lor2c_probe import __version__
from lor2c_probe.errors import StorageError, UserError

TOOL = "lor2c-probe"
ASIDE = ".replaced-"  # infix of moved-aside outputs; folder scans skip names containing it
_TEMP = (".lock", ".*.tmp", ".partial-*", ".*.partial-*")  # the tool's own transient entries


@dataclass(frozen=True)
class OutputKind:
    name: str
    marker: str
    entries: tuple[str, ...]  # fnmatch patterns of the top-level entries this kind writes
    trees: dict[str, tuple[str, ...]] = field(default_factory=dict)  # sub-folders checked file by file before a delete
    runs: tuple[str, ...] = ()  # entries that hold training runs: present means move aside
    legacy_keys: tuple[str, ...] = ()  # a marker written before signatures existed has all these keys

    def allows(self, name: str) -> bool:
        return any(fnmatch(name, p) for p in self.entries + _TEMP)


_ANALYSIS = ("summary.txt", "runs")
KINDS: dict[str, OutputKind] = {k.name: k for k in (
    OutputKind("run", "manifest.json", ("manifest.json", "tables", "checkpoints", "superseded", "report", "tensorboard", "wandb", "mlruns"),
               runs=("manifest.json",), legacy_keys=("schema_version", "config", "versions")),
    OutputKind("report", "report.json", ("report.json", "report.html", "figures", "data"),
               trees={"figures": ("*.png", "*.svg"), "data": ("*.parquet",)}, legacy_keys=("title", "runs", "sections")),
    OutputKind("study", "study.json", ("study.json", "runs", "report"), runs=("runs",), legacy_keys=("study", "results")),
    OutputKind("gradients", "gradients.json", _ANALYSIS + ("report", "gradients.json", "gradient_ratio.parquet", "gradient_ratio.html",
               "gradient_ratio.png", "activation_grads.parquet", "activation_grads.png", "activation_profile.png",
               "activation_grad_ratio.parquet", "gradient_ratio_seeds.parquet", "gradient_trend.parquet"), runs=("runs",), legacy_keys=("runs", "baseline"), trees={}),
    OutputKind("spectrum", "spectrum.json", _ANALYSIS + ("spectrum.json", "low_rank.parquet", "low_rank_summary.parquet",
               "low_rank.png", "low_rank.html", "subspace.parquet", "subspace.png", "low_rank_claims.parquet", "phi_chance.parquet"), runs=("runs",), legacy_keys=("runs",)),
    OutputKind("sfs", "sfs.json", _ANALYSIS + ("sfs.json", "sfs.parquet", "events.parquet", "sfs_traces.png", "sfs_traces.html"),
               runs=("runs",)),
)}


def signature() -> dict[str, str]:
    """Keys every marker file carries: proof that this tool wrote the folder."""
    return {"written_by": TOOL, "tool_version": __version__}


def is_ours(marker: Path, kind: OutputKind) -> bool:
    from lor2c_probe.record.atomic import read_json

    try:
        meta = read_json(marker)
    except StorageError:
        return False
    if not isinstance(meta, dict):
        return False
    if meta.get("written_by") == TOOL:
        return True
    return bool(kind.legacy_keys) and all(k in meta for k in kind.legacy_keys)


@dataclass(frozen=True)
class Replacement:
    """An existing output that ``--overwrite`` will replace, checked to be ours."""

    out: Path
    kind: str
    move_aside: bool


def _protected(out: Path) -> str | None:
    here, home, target = Path.cwd().resolve(), Path.home().resolve(), out.resolve()
    if target == Path(target.anchor):
        return "it is the file-system root"
    if target == home:
        return "it is your home folder"
    if target == here or target in here.parents:
        return "it is the working folder or one of its parents"
    return None


def _first_foreign(out: Path, kind: OutputKind) -> Path | None:
    for entry in sorted(out.iterdir()):
        if not kind.allows(entry.name):
            return entry
        if entry.name in kind.trees:
            if not entry.is_dir():
                return entry
            for f in sorted(entry.rglob("*")):
                if f.is_dir() or not any(fnmatch(f.name, p) for p in kind.trees[entry.name]):
                    return f
    return None


def only_transient(out: Path) -> bool:
    """Empty, or holding only the tool's own transient files (a lock, a temporary left by a killed write)."""
    return all(any(fnmatch(e.name, p) for p in _TEMP) for e in out.iterdir())


def _holds_runs(out: Path, kind: OutputKind) -> bool:
    return any((out / r).exists() for r in kind.runs)


def check_output(out: Path, kind: str, overwrite: bool, *, resume_hint: str = "", inputs: list[Path] | None = None) -> Replacement | None:
    """Before any work: refuse an ``out`` that cannot be used. Returns the output ``--overwrite`` will replace, if any.
    ``inputs``: runs the command reads, which an overwrite must not move away."""
    k = KINDS[kind]
    out = Path(out)
    inside = [p for p in inputs or [] if out.resolve() == Path(p).resolve() or out.resolve() in Path(p).resolve().parents]
    if inside:
        raise UserError(f"--out {out} holds {inside[0]}, a run this command reads; choose another output folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a directory")
    _check_writable(out)
    if not out.exists() or only_transient(out):
        return None
    if not overwrite:
        raise UserError(f"output directory {out} already exists; pass --overwrite to replace it{resume_hint}")
    why = _protected(out)
    if why:
        raise UserError(f"refusing to --overwrite {out}: {why}; give a dedicated output folder")
    marker = out / k.marker
    if not marker.is_file():
        raise UserError(f"refusing to --overwrite {out}: it has no {k.marker}, so it is not a {kind} output that lor2c-probe wrote")
    if not is_ours(marker, k):
        raise UserError(f"refusing to --overwrite {out}: {marker} was not written by lor2c-probe")
    foreign = _first_foreign(out, k)
    if foreign is not None:
        raise UserError(f"refusing to --overwrite {out}: {foreign} is not lor2c-probe's {kind} output; move it out of the folder first")
    return Replacement(out, kind, _holds_runs(out, k))


def _check_writable(out: Path) -> None:
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"output directory {out} cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output directory {out} is not writable (no write permission on {parent})")


def aside_path(out: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    cand, n = out.with_name(f"{out.name}{ASIDE}{stamp}"), 2
    while cand.exists():
        cand, n = out.with_name(f"{out.name}{ASIDE}{stamp}-{n}"), n + 1
    return cand


def replace_output(rep: Replacement) -> Path | None:
    """Clear ``rep.out`` (checked again now): move it aside when it holds runs (returns where), else delete it."""
    k = KINDS[rep.kind]
    foreign = _first_foreign(rep.out, k) if rep.out.is_dir() else None
    if foreign is not None:  # something arrived between the check and now
        raise UserError(f"refusing to --overwrite {rep.out}: {foreign} is not lor2c-probe's {rep.kind} output")
    try:
        if rep.move_aside or _holds_runs(rep.out, k):
            dest = aside_path(rep.out)
            os.rename(rep.out, dest)
            (dest / ".lock").unlink(missing_ok=True)  # ours, held until the caller releases it; not left to look stale
            return dest
        shutil.rmtree(rep.out)
    except OSError as e:
        raise StorageError(f"cannot replace {rep.out}: {e.strerror or e}") from e
    return None


def is_aside(path: Path) -> bool:
    return ASIDE in Path(path).name


def mark(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the signature first: what every marker file holds."""
    return {**signature(), **meta}


@contextmanager
def writing(out: Path, rep: Replacement | None, what: str, *, fresh: bool = True) -> Iterator[Path | None]:
    """Hold ``out``'s lock while the block writes it. With ``rep``: lock the old output, move it aside or delete
    it, then lock the new folder; yields where the old one was moved (None if deleted or none). ``fresh``: the
    folder must hold nothing when the lock is taken (another process may have filled it since the check)."""
    from lor2c_probe.notices import notice
    from lor2c_probe.record.lock import DirLock

    moved, created = None, not out.exists()
    if rep is not None:
        with DirLock(out, what, notice):
            moved = replace_output(rep)
        if moved is not None:
            notice(f"the previous {what} {out} holds training runs: moved aside to {moved}, not deleted")
    with DirLock(out, what, notice):
        if fresh:
            if not only_transient(out):
                raise UserError(f"output directory {out} was filled by another process after it was checked; choose another --out")
            for e in out.iterdir():  # what a killed writer left half-written; we hold the lock, so nobody else writes here
                if e.name != ".lock":
                    shutil.rmtree(e) if e.is_dir() else e.unlink()
        try:
            yield moved
        except BaseException:
            if created and out.is_dir() and only_transient(out):  # failed before writing anything: leave no empty folder
                shutil.rmtree(out, ignore_errors=True)
            raise


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A hidden folder inside ``out`` to write a command's files into; when the block succeeds they are moved into
    ``out`` together, when it fails nothing half-written appears. A failed write is a StorageError naming it."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".partial-") as tmp:
        try:
            yield Path(tmp)
        except OSError as e:
            raise StorageError(f"cannot write into {out}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from e
        publish(Path(tmp), out)


def publish(src: Path, out: Path) -> None:
    """Move every entry of ``src`` into ``out`` (a sub-folder replaces its namesake whole), fsynced."""
    from lor2c_probe.record.atomic import fsync_dir, fsync_file

    try:
        for p in src.iterdir():
            for f in [p] if p.is_file() else p.rglob("*"):
                if f.is_file():
                    fsync_file(f)
            target = out / p.name
            if target.is_dir() and p.is_dir():
                shutil.rmtree(target)
            os.replace(p, target)
        fsync_dir(out)
    except OSError as e:
        raise StorageError(f"cannot write into {out}: {e.strerror or e}") from e
