"""lor2c-probe inside a Hugging Face ``Trainer``: one callback. Runs alone or under ``torchrun --nproc_per_node 2``
(gloo on the CPU; only rank 0 writes).

    python docs/examples/hf_trainer.py --out runs/example-hf
"""

from __future__ import annotations

from _tiny import arguments, collate, examples, summary, tiny_model
from transformers import Trainer, TrainingArguments

from lor2c_probe import ProbeCallback  # probe


def main() -> None:
    args = arguments(__doc__, resume="a Trainer checkpoint to resume from (the run directory continues)")

    train, held_out = examples(96), examples(64, seed=1)
    targs = TrainingArguments(output_dir=f"{args.out}-trainer", per_device_train_batch_size=8, gradient_accumulation_steps=args.accum,
                              num_train_epochs=args.epochs, learning_rate=2e-3, warmup_steps=2, max_grad_norm=1.0, eval_strategy="epoch",
                              save_strategy="epoch", logging_steps=5, report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = Trainer(model=tiny_model(), args=targs, train_dataset=train, eval_dataset=held_out, data_collator=collate,
                      callbacks=[ProbeCallback(args.out, method="lora", spectra_batch=collate(held_out[:16]))])  # probe
    trainer.train(resume_from_checkpoint=args.resume)
    if trainer.is_world_process_zero():
        print(summary(args.out))


if __name__ == "__main__":
    main()
