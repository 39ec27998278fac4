"""Save a random-weight model of a bundled shape as a folder `--model` can load (no hub, no real weights).

Usage: python scripts/random_model.py roberta-base OUT_FOLDER [--seed 0]
The shape is one of `lor2c_probe.planning.ARCH_CONFIGS` (roberta-base, bert-base, minilm, llama-1b, ...). The tokenizer
is the embedded all-MiniLM-L6-v2's (BERT WordPiece, 30,522 ids): every id it makes is inside these shapes' vocabularies,
so the folder trains like the real architecture for speed, not for accuracy. Used by scripts/gpu_check.sh (issue 22:
real roberta-base weights are not available offline).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def save_random_model(shape: str, out: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lor2c_probe.models import embedded_model_path
    from lor2c_probe.planning import arch_config

    config = arch_config(shape)
    config.num_labels = 2
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(embedded_model_path()).save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(save_random_model(a.shape, a.out, seed=a.seed))


if __name__ == "__main__":
    main()
