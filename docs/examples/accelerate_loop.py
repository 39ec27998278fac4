"""lor2c-probe in your own ``accelerate`` loop: ``accelerator.backward``, its accumulation context, its processes.
The added lines end in ``# probe``. Runs alone or under ``accelerate launch --cpu --num_processes 2`` / ``torchrun
--nproc_per_node 2`` (gloo on the CPU; only rank 0 writes).

    python docs/examples/accelerate_loop.py --out runs/example-accelerate
"""

from __future__ import annotations

import torch
from _tiny import accuracy, arguments, collate, examples, summary, tiny_model
from accelerate import Accelerator

from lor2c_probe import Recorder  # probe


def main() -> None:
    args = arguments(__doc__)

    accelerator = Accelerator(gradient_accumulation_steps=args.accum, cpu=True)
    model, held_out = tiny_model(), examples(64, seed=1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    loader = torch.utils.data.DataLoader(examples(96), batch_size=8, collate_fn=collate)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    rec = Recorder(args.out, model, opt, accelerator=accelerator, max_grad_norm=1.0, spectra_batch=collate(held_out[:16]))  # probe
    for epoch in range(args.epochs):
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                rec.after_backward(loss)  # probe
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad()
        rec.epoch_end({"accuracy": accuracy(accelerator.unwrap_model(model), held_out)})  # probe
    rec.close()  # probe
    if accelerator.is_main_process:
        print(summary(args.out))


if __name__ == "__main__":
    main()
