"""A real ``Trainer`` (the loop ``lor2c-probe train`` runs) on a fixed random batch, with a chosen probe set.

Random token ids at a fixed length make every step the same shape, so step times compare cleanly;
the spectral probe batch has varied lengths, as real text does (uniform in [seq_len/4, seq_len]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lor2c_probe.bench.shapes import load_shape
from lor2c_probe.config import AdapterConfig, ProbeConfig, RunConfig, TrainConfig
from lor2c_probe.data.tasks import TASKS
from lor2c_probe.models import Backbone
from lor2c_probe.record.store import RunStore
from lor2c_probe.train.batches import Encoded, collate
from lor2c_probe.train.loop import Trainer

PROBE_SETS: dict[str, ProbeConfig] = {
    "none": ProbeConfig(grads=False, activations=False, spectra=False),
    "grads": ProbeConfig(grads=True, activations=False, spectra=False),
    "grads+activations": ProbeConfig(grads=True, activations=True, spectra=False),
    "all": ProbeConfig(grads=True, activations=True, spectra=True),
}


def random_tokens(vocab: int, n: int, length: int | tuple[int, int], seed: int, *, causal: bool = False) -> Encoded:
    """``n`` examples of random ids (fixed ``length``, or uniform in the (lo, hi) range), binary labels; for a
    causal LM the labels are the ids themselves (loss on every token, as ``--loss-on all``)."""
    g = np.random.default_rng(seed)
    lo = min(1000, vocab // 2)  # clear of special tokens
    lengths = np.full(n, length) if isinstance(length, int) else g.integers(length[0], length[1] + 1, size=n)
    ids = [[int(t) for t in g.integers(lo, vocab, size=int(k))] for k in lengths]
    feats = {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}
    if causal:
        feats["labels"] = [list(r) for r in ids]
    return Encoded(feats, torch.as_tensor(g.integers(0, 2, size=n), dtype=torch.long), pad_id=0)


@dataclass
class Bench:
    trainer: Trainer
    batch: dict[str, torch.Tensor]
    cfg: RunConfig
    backbone: Backbone
    probe_data: Encoded
    sinks: Any = None  # live sinks attached to the store (bench/probe_sets.py)

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.trainer.train_step([self.batch])

    def epoch_end(self) -> None:
        """The epoch-end callbacks (the spectral reading), as the loop calls them."""
        for cb in self.trainer.callbacks:
            cb.on_epoch_end(self.trainer.state)

    def run(self, n: int) -> None:
        """``n`` optimizer steps, then a flush: everything recorded is written to Parquet."""
        self.steps(n)
        self.trainer.flush()


def make_bench(shape: str, method: str, probes: str | ProbeConfig, store_dir: Path, *, device: torch.device, precision: str,
               rank: int, batch_size: int, seq_len: int, seed: int = 0) -> Bench:
    """Identically initialised for a given (shape, method, seed), whatever the probe set."""
    from lor2c_probe.adapters import get_method
    from lor2c_probe.train.build import make_probes, seed_everything

    cfg = RunConfig(adapter=AdapterConfig(method=method, rank=rank, alpha=2.0 * rank),
                    train=TrainConfig(batch_size=batch_size, lr=1e-4, device=device.type, precision=precision,
                                      flush_every=10**9, seed=seed),
                    probes=PROBE_SETS[probes] if isinstance(probes, str) else probes)
    seed_everything(seed)
    model, backbone = load_shape(shape)
    model = get_method(method).attach(model, backbone, cfg.adapter).to(device)
    vocab = model.config.vocab_size
    causal = backbone.causal
    train = random_tokens(vocab, batch_size, min(seq_len, model.config.max_position_embeddings - 2), seed, causal=causal)
    probe_data = random_tokens(vocab, cfg.probes.spectra_examples, (max(1, seq_len // 4), seq_len), seed + 1, causal=causal)
    spec = TASKS["alpaca" if causal else "rotten-tomatoes"]
    trainer = Trainer(model=model, cfg=cfg.train, spec=spec, train=train, eval=train,
                      store=RunStore(store_dir), device=device, precision=precision, param_marker="",
                      callbacks=make_probes(cfg, backbone, probe_data), progress=False)
    for cb in trainer.callbacks:
        cb.on_train_start(trainer.state)
    return Bench(trainer, collate(train, list(range(batch_size))), cfg, backbone, probe_data)
