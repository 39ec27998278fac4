"""The Lightning callback records the built-in loop's tables (tests/integrations/parity.py): the same model, seed,
batches, AdamW groups, warmup schedule (stepped per optimizer step) and clipping, inside ``lightning.Trainer``."""

from __future__ import annotations

import pytest
import torch

from lor2c_probe.record.store import read_manifest, read_table
from tests.integrations.parity import EPOCHS, MAX_NORM, assert_same_tables, builtin_run, config, setup

L = pytest.importorskip("lightning")


class Module(L.LightningModule):
    def __init__(self, s):
        super().__init__()
        self.model, self.s = s.model, s

    def training_step(self, batch, idx):
        return self.model(**batch).loss

    def validation_step(self, batch, idx):
        self.log("val_loss", self.model(**batch).loss)

    def configure_optimizers(self):
        return {"optimizer": self.s.optimizer, "lr_scheduler": {"scheduler": self.s.scheduler, "interval": "step"}}


def test_lightning_records_the_builtin_loops_tables(tiny_models, tiny_data, tmp_path):
    from lor2c_probe.integrations.lightning import LightningProbe

    cfg = config(tiny_models, tiny_data, "lora")
    loop = builtin_run(cfg, tmp_path / "loop")
    s = setup(cfg)
    probe = LightningProbe(tmp_path / "pl", method="lora", scaling=cfg.adapter.scaling, spectra_batch=s.probe_batch, flush_every=2,
                           bottom_every=2)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, gradient_clip_val=MAX_NORM, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[probe])
    one_batch = torch.utils.data.DataLoader([s.batch], batch_size=None)  # every example, the built-in loop's one batch
    trainer.fit(Module(s), train_dataloaders=one_batch, val_dataloaders=one_batch)
    assert_same_tables(loop, tmp_path / "pl")
    m = read_manifest(tmp_path / "pl")
    assert m["status"] == "completed" and m["source"].startswith("lightning.Trainer")
    ev = read_table(tmp_path / "pl", "metrics").query("split == 'eval' and name == 'loss'")
    assert list(ev["epoch"]) == list(range(EPOCHS))


def test_lightning_with_accumulation_records_the_builtin_loops_tables(tiny_models, tiny_data, tmp_path):
    """Two micro-batches per step: Lightning runs the window's last backward inside optimizer.step(closure), after
    the optimizer's step pre-hook; the gradients are still read once per step, accumulated (any split of the 16
    examples into two halves gives the built-in loop's sums)."""
    import dataclasses

    from lor2c_probe.integrations.lightning import LightningProbe
    from tests.integrations.parity import N

    cfg = config(tiny_models, tiny_data, "lora")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=N // 2, grad_accum=2))
    loop = builtin_run(cfg, tmp_path / "loop")
    s = setup(cfg)
    probe = LightningProbe(tmp_path / "pl", method="lora", scaling=cfg.adapter.scaling, spectra_batch=s.probe_batch, flush_every=2,
                           bottom_every=2)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, gradient_clip_val=MAX_NORM, accumulate_grad_batches=2,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[probe])
    halves = [{k: v[:N // 2] for k, v in s.batch.items()}, {k: v[N // 2:] for k, v in s.batch.items()}]
    trainer.fit(Module(s), train_dataloaders=torch.utils.data.DataLoader(halves, batch_size=None))
    assert_same_tables(loop, tmp_path / "pl")
