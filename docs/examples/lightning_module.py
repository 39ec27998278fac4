"""lor2c-probe inside PyTorch Lightning: one callback. The added lines end in ``# probe``.

    python docs/examples/lightning_module.py --out runs/example-lightning
"""

from __future__ import annotations

import lightning as L
import torch
from _tiny import arguments, collate, examples, summary, tiny_model

from lor2c_probe import LightningProbe  # probe


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_model()

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def validation_step(self, batch, batch_idx):
        out = self.model(**batch)
        self.log("val_loss", out.loss)
        self.log("val_accuracy", (out.logits.argmax(-1) == batch["labels"]).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=2e-3)


def main() -> None:
    args = arguments(__doc__)

    train = torch.utils.data.DataLoader(examples(96), batch_size=8, collate_fn=collate)
    held_out = examples(64, seed=1)
    val = torch.utils.data.DataLoader(held_out, batch_size=32, collate_fn=collate)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, accumulate_grad_batches=args.accum, gradient_clip_val=1.0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[LightningProbe(args.out, method="lora", spectra_batch=collate(held_out[:16]))])  # probe
    trainer.fit(Classifier(), train, val)
    if trainer.is_global_zero:
        print(summary(args.out))


if __name__ == "__main__":
    main()
