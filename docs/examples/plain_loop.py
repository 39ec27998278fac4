"""lor2c-probe in a plain PyTorch loop, with gradient accumulation and clipping. The added lines end in ``# probe``.

    python docs/examples/plain_loop.py --out runs/example-plain
"""

from __future__ import annotations

import torch
from _tiny import accuracy, arguments, collate, examples, summary, tiny_model

from lor2c_probe import Recorder  # probe


def main() -> None:
    args = arguments(__doc__)

    model = tiny_model()
    train, held_out = examples(96), examples(64, seed=1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    rec = Recorder(args.out, model, opt, grad_accum=args.accum, max_grad_norm=1.0, spectra_batch=collate(held_out[:16]))  # probe
    for epoch in range(args.epochs):
        for i in range(0, len(train), 8):
            loss = model(**collate(train[i:i + 8])).loss
            (loss / args.accum).backward()
            rec.after_backward(loss)  # probe
            if (i // 8 + 1) % args.accum == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad()
        rec.epoch_end({"accuracy": accuracy(model, held_out)})  # probe
    rec.close()  # probe
    print(summary(args.out))


if __name__ == "__main__":
    main()
