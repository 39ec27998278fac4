"""Recorded tiny runs shared by the report tests: every table, some tables, structural events."""

from __future__ import annotations

from pathlib import Path

import pytest

from lor2c_probe.options import config_from_options
from lor2c_probe.train.session import run_training


def tiny_options(model_dir: Path, data: dict[str, Path], **kw) -> dict:
    base = dict(model=str(model_dir), task="custom", train_file=str(data["train"]), eval_file=str(data["eval"]), epochs=2,
                steps_per_epoch=6, batch_size=8, rank=2, device="cpu", seed=3)
    return {**base, **kw}


def record(out: Path, options: dict) -> Path:
    cfg, sources = config_from_options(options)
    run_training(cfg, out, policy_sources=sources, progress=False)
    return out


@pytest.fixture(scope="session")
def recorded(tiny_models, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """lor2c and lora with every probe, im-lor2c with one merge and one injection, a full-rank residual with spectra,
    and a lor2c run with no probes (another seed)."""
    root = tmp_path_factory.mktemp("recorded")
    m, d = tiny_models["bert"], tiny_data
    return {
        "lor2c": record(root / "lor2c", tiny_options(m, d, method="lor2c")),
        "lora": record(root / "lora", tiny_options(m, d, method="lora")),
        "im-lor2c": record(root / "im", tiny_options(m, d, method="im-lor2c", merges=1, injections=1, schedule="step",
                                                      spectra_every=2, probes="spectra")),
        "full": record(root / "full", tiny_options(m, d, method="full-rank-residual", probes="spectra")),
        "bare": record(root / "bare", tiny_options(m, d, method="lor2c", probes="none", seed=4)),
    }
