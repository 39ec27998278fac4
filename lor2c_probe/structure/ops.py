"""Merge and inject on a live model and optimizer (decisions.md item 5).

Merge: the survivor keeps its Parameter objects, hence its AdamW moments; it now reads the input of the
span's first block and adds to the output of its last. The other module's parameters leave the optimizer's
param groups and state. Inject: the LoR2C module's parameters leave the optimizer; the block's dormant q/v
LoRA (r/2, registered with the optimizer from the start so the LR schedule covers it) starts training.
``freeze=True`` emulates the released code (merged module never updated, injected LoRA never trained).
"""

from __future__ import annotations

import torch

from lor2c_probe.adapters.residual import BANK_ATTR, ResidualBank, path_id


def remove_from_optimizer(optimizer: torch.optim.Optimizer | None, params: list[torch.nn.Parameter]) -> None:
    if optimizer is None:  # replaying recorded changes on resume, before the optimizer exists
        return
    ids = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    for p in params:
        optimizer.state.pop(p, None)


def own_params(bank: ResidualBank, key: str) -> list[torch.nn.Parameter]:
    """The path's own parameters (a shared A belongs to the bank and stays)."""
    return list(bank.paths[key].parameters(recurse=False))


def merge(bank: ResidualBank, a: str, b: str, keep: str, optimizer: torch.optim.Optimizer | None, *, freeze: bool = False) -> str:
    """Merge adjacent paths ``a`` and ``b`` (bank keys) keeping ``keep``'s factors; returns the new key."""
    if keep not in (a, b):
        raise ValueError(f"survivor {keep!r} must be one of {a!r}, {b!r}")
    pa, pb = bank.paths[a], bank.paths[b]
    if pa.end + 1 != pb.start:
        raise ValueError(f"paths {a} and {b} are not adjacent")
    other = b if keep == a else a
    remove_from_optimizer(optimizer, own_params(bank, other))
    survivor = bank.paths[keep]
    del bank.paths[a]
    del bank.paths[b]
    survivor.start, survivor.end = pa.start, pb.end
    key = path_id(survivor.start, survivor.end)
    bank.paths[key] = survivor
    bank._install()
    if freeze:
        survivor.requires_grad_(False)
    return key


def block_lora_params(model: torch.nn.Module, block: int, layers_path: str | None = None) -> list[torch.nn.Parameter]:
    """The (dormant) LoRA tensors of one block, found through PEFT's tuner layers in the model's block stack (GPT-2's
    ``transformer.h.<i>`` as well as ``layer.<i>``)."""
    from lor2c_probe.blocks import find_blocks
    from lor2c_probe.probes.placement import tuner_sites

    layers_path, _ = find_blocks(model, layers_path)
    out = []
    for site in tuner_sites(model, layers_path):
        if site.kind == "lora" and site.layer == block:
            out += [p for n, p in model.get_submodule(site.path).named_parameters() if not n.startswith("base_layer.")]
    return out


def inject(bank: ResidualBank, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, *, freeze: bool = False,
           layers_path: str | None = None) -> list[torch.nn.Parameter]:
    """Replace path ``key`` (a single block) by that block's dormant q/v LoRA; returns the LoRA parameters."""
    path = bank.paths[key]
    if path.start != path.end:
        raise ValueError(f"path {key} was merged; only single-block modules can be injected")
    lora = block_lora_params(model, path.start, layers_path)
    if not lora:
        raise ValueError(f"block {path.start} has no dormant LoRA to inject (use an inject-capable method)")
    remove_from_optimizer(optimizer, own_params(bank, key))
    bank.remove_path(key)
    if optimizer is not None:
        in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if any(id(p) not in in_optimizer for p in lora):
            raise ValueError("injected LoRA parameters are not registered with the optimizer")
    for p in lora:
        p.requires_grad_(not freeze)
    return lora


def find_bank(model: torch.nn.Module) -> ResidualBank:
    """The model's LoR2C bank (the residual paths across blocks)."""
    for m in model.modules():
        if hasattr(m, BANK_ATTR) and isinstance(getattr(m, BANK_ATTR), torch.nn.Module):
            return getattr(m, BANK_ATTR)
    raise ValueError("no LoR2C bank in this model")


def replay(model: torch.nn.Module, applied: list[dict]) -> None:
    """Re-apply recorded changes, in order, to a freshly built model (resume; no optimizer yet)."""
    bank = find_bank(model)
    for op in applied:
        if op["kind"] == "merge":
            merge(bank, op["a"], op["b"], op["keep"], None, freeze=op["freeze"])
        else:
            inject(bank, op["key"], model, None, freeze=op["freeze"])
