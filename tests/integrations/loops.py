"""The other loops of the parity tests, runnable in-process or under torchrun (two gloo processes):

    python -m torch.distributed.run --nproc_per_node 2 tests/integrations/loops.py {accelerate,hf} OUT MODEL TRAIN EVAL METHOD

Each builds the parity setup (tests/integrations/parity.py) and trains it its own way, recording with lor2c-probe."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integrations.parity import EPOCHS, MAX_NORM, N, setup  # noqa: E402


def hf_trainer(s, cfg, out, work, *, save=False, per_device=N, **cb_kw):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from lor2c_probe.integrations.hf import ProbeCallback

    args = TrainingArguments(
        output_dir=str(work / "hf-out"), per_device_train_batch_size=per_device, num_train_epochs=EPOCHS, learning_rate=cfg.train.lr,
        warmup_steps=s.plan.warmup_steps, max_grad_norm=MAX_NORM, logging_steps=1, report_to="none", use_cpu=True,
        seed=cfg.train.seed, disable_tqdm=True, eval_strategy="epoch", save_strategy="epoch" if save else "no",
        # transformers 5.24 multiplies the loss by the number of processes for a model that accepts loss kwargs, though
        # BERT's classification loss is already a per-rank mean: gradients and eval loss come out world-size times the
        # mean loss's. Off here, so both loops optimise the same loss (docs/integrations.md#hugging-face-trainer).
        average_tokens_across_devices=False,
    )
    cb = ProbeCallback(out, method=cfg.adapter.method, scaling=cfg.adapter.scaling, spectra_batch=s.probe_batch, flush_every=2,
                       bottom_every=2, **cb_kw)
    # The optimizer's groups are the built-in loop's (adapters; head at lr * head_lr_scale); the scheduler is the Trainer's own.
    return Trainer(model=s.model, args=args, train_dataset=s.dataset, eval_dataset=s.eval_dataset,
                   data_collator=DataCollatorWithPadding(s.tokenizer), optimizers=(s.optimizer, None), callbacks=[cb])


def accelerate_loop(s, cfg, out, *, accum: int = 1) -> None:
    """The built-in loop's batches (its epoch order, ``accum`` micro-batches of ``batch_size`` per step), in a user's
    accelerate loop; under two processes each rank takes half of every micro-batch."""
    from accelerate import Accelerator

    from lor2c_probe.recorder import Recorder
    from lor2c_probe.train.batches import collate, epoch_order

    acc = Accelerator(gradient_accumulation_steps=accum, cpu=True)
    model, opt = acc.prepare(s.model, s.optimizer)
    rec = Recorder(out, model, opt, accelerator=acc, method=cfg.adapter.method, scaling=cfg.adapter.scaling, max_grad_norm=MAX_NORM,
                   spectra_batch=s.probe_batch, flush_every=2, bottom_every=2)
    bs, enc = cfg.train.batch_size, s.encoded
    for epoch in range(EPOCHS):
        order = epoch_order(len(enc), cfg.train.seed, epoch)
        for i in range(accum):
            part = np.array_split(order[i * bs:(i + 1) * bs], acc.num_processes)[acc.process_index]
            with acc.accumulate(model):
                loss = model(**collate(enc, part)).loss
                acc.backward(loss)
                rec.after_backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), MAX_NORM)
                opt.step()
                if acc.sync_gradients:
                    s.scheduler.step()
                opt.zero_grad()
        rec.epoch_end()
    rec.close()


def main(kind: str, out: str, model: str, train: str, evalf: str, method: str) -> None:
    from tests.integrations.parity import config

    cfg = config({"bert": Path(model)}, {"train": Path(train), "eval": Path(evalf)}, method)
    s = setup(cfg)
    if kind == "accelerate":
        accelerate_loop(s, cfg, Path(out))
    else:
        hf_trainer(s, cfg, Path(out), Path(out).parent / "hf-work", per_device=N // 2).train()
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:])
