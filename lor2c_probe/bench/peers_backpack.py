"""BackPACK as a gradient monitor for ``bench --peers``: its cheapest first-order quantity, ``BatchL2Grad`` (the squared
norm of each example's gradient, per parameter), on the modules it supports.

What was found (BackPACK 1.7.1, torch 2.13, transformers 5): ``extend(model)`` on a Hugging Face encoder fails in the
forward (BackPACK stores each module's output as ``module.output``, and BERT's attention already has a child named
``output``), and it has no extension for LayerNorm or attention. What works is extending only the trainable
``nn.Linear`` modules: PEFT's ``lora_A``/``lora_B`` and the classifier head. LoR2C's paths keep their factors as bare
Parameters of a custom module, which BackPACK has no extension for, so it cannot monitor LoR2C. Cockpit's cheapest
configuration ("economy") asks BackPACK for ``BatchGrad`` through the same extension points, so it inherits both limits.
"""

from __future__ import annotations

from typing import Any

NAME = "backpack BatchL2Grad (trainable nn.Linear only)"


def backpack_variant(shape: str, method: str) -> dict[str, Any]:
    """{"name", "attach": Bench -> Bench} where BackPACK can attach, else {"unavailable": {name: reason}}."""
    from lor2c_probe.bench.peer_monitors import missing

    why = missing("backpack")
    if why:
        return {"name": NAME, "unavailable": {NAME: why}}
    from lor2c_probe.adapters import METHODS

    if "lor2c" in METHODS[method].kinds:
        return {"name": NAME, "unavailable": {NAME: (
            "BackPACK has extensions for nn.Linear/Conv/BatchNorm/Embedding/RNN only; LoR2C's paths hold their factors as bare "
            "Parameters of a custom module (lor2c_probe.adapters.residual), so BackPACK cannot read their gradients")}}
    return {"name": NAME, "attach": attach}


def attach(bench: Any) -> Any:
    """Extend every ``nn.Linear`` whose parameters are all trainable, and run each step inside ``backpack(BatchL2Grad())``."""
    import warnings

    import torch
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad

    model = bench.trainer.model
    extended = 0
    for mod in model.modules():
        params = list(mod.parameters(recurse=False))
        if isinstance(mod, torch.nn.Linear) and params and all(p.requires_grad for p in params):
            extend(mod)
            extended += 1
    if not extended:
        raise RuntimeError("no trainable nn.Linear module for BackPACK to extend")
    plain = bench.steps

    def steps(n: int) -> None:
        with warnings.catch_warnings():  # torch warns at every backward that a full backward hook fires on outputs only
            warnings.simplefilter("ignore")
            with backpack(BatchL2Grad()):
                plain(n)

    bench.steps = steps
    bench.extended = extended
    return bench
