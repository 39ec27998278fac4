"""Singular spectra of every adapter map (``weights``) and of its output on a fixed probe batch (``features``).

When: at each epoch end, plus every ``every_steps`` optimizer steps if set. What:
- weights: sigma(s * B A) from the factors (QR, never a dense d x d SVD); sigma(s * B_i A_shared) for
  ShareLoR2C; torch.linalg.svdvals(s * W) for the full-rank map; every PEFT tuner layer (LoRA, DoRA, PiSSA,
  AdaLoRA, VeRA, IA3, LoHa, LoKr): the exact spectrum of its update ΔW to the frozen weight by the cheapest exact
  route (``updates.update_of``), each adapted projection separately.
- features: sigma of the module's output matrix (non-pad tokens x d) on the probe batch (seeded sample
  of training examples, eval mode so dropout is off, float32, no grad): through the factor structure
  for low-rank modules, through a float64 streamed Gram matrix for dense ones.
Rows go to ``spectra`` (one per singular value) and ``sfs`` (SFS_k for each k).

lor2c-probe's own modules are found from parameter names by ``record.naming.classify`` (LoR2C paths and the shared
A, ResLoRA's bank); PEFT's from its tuner layers (``probes.placement.tuner_sites``); no adapter is imported.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lor2c_probe.analysis.spectral import sfs as sfs_value
from lor2c_probe.probes.activations import find_block_stack
from lor2c_probe.record.naming import classify
from lor2c_probe.spectra import gram_svdvals, lowrank_feature_svdvals, lowrank_svdvals
from lor2c_probe.train.batches import Encoded, collate
from lor2c_probe.train.hooks import TrainerCallback, TrainState

if TYPE_CHECKING:
    from lor2c_probe.probes import ProbeContext

PROBE_CHUNK = 16  # examples per probe-batch forward (length-sorted, so padding stays small)


@dataclass
class SpectralModule:
    module: str  # lor2c.3, lor2c.0-1, lora.3.q
    B: torch.nn.Parameter | None = None
    A: torch.nn.Parameter | None = None
    W: torch.nn.Parameter | None = None
    block: int | None = None  # input = hidden state entering this block (LoR2C family)
    path: str | None = None  # input = the input of this submodule (LoRA's wrapped projection)
    tuner: torch.nn.Module | None = None  # a PEFT tuner layer: its update comes from updates.update_of
    adapter: str = "default"

    @property
    def dense(self) -> bool:
        return self.W is not None


def _stored_dtype_autocast(model: torch.nn.Module, device: torch.device) -> Any:
    """fp32 weights: no autocast (the probe reads exact features). Frozen weights stored in bf16/fp16
    (--base-dtype): autocast in that dtype, as training does, so fp32 heads and adapters accept their inputs."""
    half = {p.dtype for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32}
    return torch.autocast(device.type, dtype=half.pop()) if len(half) == 1 else nullcontext()


def _tuner_modules(model: torch.nn.Module, layers_path: str | None) -> dict[str, SpectralModule]:
    """Every PEFT tuner layer that trains (a dormant LoRA has not been injected and contributes nothing), per adapter."""
    from lor2c_probe.probes.placement import UNPLACED, tuner_sites

    if layers_path is None:
        from lor2c_probe.blocks import BlockStackError, find_blocks

        try:
            layers_path = find_blocks(model)[0]
        except BlockStackError:
            layers_path = ""  # every tuner layer is then unplaced: named by its path
    out = {}
    for site in tuner_sites(model, layers_path):
        layer = model.get_submodule(site.path)
        if not any(p.requires_grad for n, p in layer.named_parameters() if not n.startswith("base_layer.")):
            continue
        for adapter in layer.active_adapters:
            key = f"{site.kind}.{site.layer}.{site.proj}" if site.layer is not None else f"{UNPLACED}{site.path}"
            key += "" if adapter == "default" else f".{adapter}"
            out[key] = SpectralModule(key, path=site.path, tuner=layer, adapter=adapter)
    return out


def discover(model: torch.nn.Module, layers_path: str | None = None) -> list[SpectralModule]:
    """Every adapter map of the model: LoR2C paths (merged spans included) with the shared A resolved and ResLoRA's
    q/v updates, from parameter names (``classify``); every PEFT tuner layer's update, read at its layer's input."""
    mods: dict[str, SpectralModule] = _tuner_modules(model, layers_path)
    shared = None
    for name, p in model.named_parameters():
        role = classify(name)
        # LoR2C-bank paths always act in the forward pass, trainable or frozen (--emulate-reference-bugs);
        # a LoRA counts only when trainable (a dormant one has not been injected and contributes nothing).
        if role.kind == "lor2c-shared":
            shared = p
        elif role.kind == "lor2c":
            setattr(mods.setdefault(role.module, SpectralModule(role.module, block=role.layer)), role.factor, p)
        elif role.kind == "reslora" and p.requires_grad:  # the bank knows where each projection sits in the model
            key = f"{role.module}.{role.proj}"
            path = model.get_submodule(role.path).input_paths[(role.proj, role.layer)]
            setattr(mods.setdefault(key, SpectralModule(key, path=path)), role.factor, p)
    for mod in mods.values():
        if mod.B is not None and mod.A is None and shared is not None:
            mod.A = shared
    return sorted(mods.values(), key=lambda m: (m.block if m.block is not None else 10**6, m.module))


class SpectralProbe(TrainerCallback):
    """Weight and feature spectra of every adapter module at epoch ends (and every N steps if set)."""

    def __init__(
        self, *, scaling: float, layers_path: str, probe_data: Encoded | None, ks: tuple[int, ...],
        every_steps: int = 0, features: bool = True, chunk_size: int = PROBE_CHUNK, probe_indices: list[int] | None = None,
        lora_scaling: float | None = None,
    ) -> None:
        self.scaling, self.layers_path, self.data = float(scaling), layers_path, probe_data
        self.lora_scaling = float(lora_scaling) if lora_scaling is not None else float(scaling)
        self.probe_indices = probe_indices
        self.ks = tuple(sorted(set(ks)))
        self.every_steps, self.features, self.chunk_size = every_steps, features and probe_data is not None, chunk_size
        self._modules: list[SpectralModule] | None = None
        self._updates: dict[str, Any] = {}  # module -> updates.Update of a PEFT tuner layer, for one reading
        self.unmeasured: dict[str, str] = {}  # tuner layers no exact route covers (OFT, an embedding LoRA, ...) -> why
        self._last_step: int | None = None

    # -- loop points -----------------------------------------------------------------------------------
    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps and state.step % self.every_steps == 0:
            self.record(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if self._last_step != state.step:  # the step interval may already have read this step
            self.record(state)

    # -- measurement ----------------------------------------------------------------------------------
    def spectra_now(self, model: torch.nn.Module, sources: tuple[str, ...] = ("weights", "features")) -> dict[tuple[str, str], np.ndarray]:
        """{(source, module): sigma} computed now; modules are rediscovered (structure may have changed). A tuner layer
        with no exact route is left out and named in ``unmeasured`` (the manifest lists it), never a failed run."""
        from lor2c_probe.updates import update_of

        self._modules, self._updates = [], {}
        for m in discover(model, self.layers_path):
            if m.tuner is not None:
                try:
                    self._updates[m.module] = update_of(m.tuner, m.adapter)  # fixed for this reading
                except TypeError as e:
                    self.unmeasured[m.module] = str(e).splitlines()[0]
                    continue
            self._modules.append(m)
        try:
            spectra = self._weight_spectra() if "weights" in sources else {}
            if "features" in sources and self.data is not None:
                spectra.update({("features", k): v for k, v in self.feature_spectra(model).items()})
        finally:
            self._updates = {}  # a dense ΔW per module is not kept between readings
        return {k: v.detach().double().cpu().numpy() for k, v in spectra.items()}

    @torch.no_grad()
    def _weight_spectra(self) -> dict[tuple[str, str], torch.Tensor]:
        """Every module's weight spectrum; the tuner layers' updates in batches of equal shape (``svdvals_many``)."""
        from lor2c_probe.updates import svdvals_many

        tuned = [m for m in self._modules if m.tuner is not None]
        batched = dict(zip((m.module for m in tuned), svdvals_many([self._updates[m.module] for m in tuned])))
        return {("weights", m.module): batched[m.module] if m.module in batched else self.weight_spectrum(m) for m in self._modules}

    def record(self, state: TrainState) -> None:
        self._last_step = state.step
        host = self.spectra_now(state.model, ("weights", "features") if self.features else ("weights",))
        rows, sfs_rows = [], []
        for (source, module), sigma in host.items():
            base = {"step": state.step, "epoch": state.epoch, "module": module, "source": source}
            rows += [{**base, "index": i, "sigma": float(s)} for i, s in enumerate(sigma)]
            sfs_rows += [{**base, "k": k, "value": sfs_value(sigma, k)} for k in self.ks]
        state.record("spectra", rows)
        state.record("sfs", sfs_rows)

    def scale_of(self, m: SpectralModule) -> float:
        return self.lora_scaling if m.module.startswith("lora.") else self.scaling

    @torch.no_grad()
    def weight_spectrum(self, m: SpectralModule) -> torch.Tensor:
        if m.tuner is not None:
            return self._updates[m.module].svdvals()
        if m.dense:
            return torch.linalg.svdvals(m.W.float()) * abs(self.scale_of(m))
        return lowrank_svdvals(m.B.float(), m.A.float(), self.scale_of(m))

    @torch.no_grad()
    def feature_spectra(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """One pass over the probe batch; per module the output's singular values (non-pad tokens)."""
        assert self.data is not None and self._modules is not None
        blocks = find_block_stack(model, self.layers_path)
        mods = {m.module: m for m in self._modules}
        updates = self._updates
        # Reduced inside the hook, so no hidden state outlives its block: (tokens, r) or a d x d Gram per module.
        partial: dict[str, Any] = {m.module: ([] if not m.dense else 0) for m in self._modules}
        mask_box: list[torch.Tensor] = []
        handles = []

        def grab(keys: list[str]):
            def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
                x = args[0] if args else next(iter(kwargs.values()))
                x = x[mask_box[0].bool()].float()  # (non-pad tokens, d)
                with torch.autocast(x.device.type, enabled=False):  # the reduction stays fp32 under --base-dtype's autocast
                    for k in keys:
                        m = mods[k]
                        if k in updates:
                            partial[k].append(updates[k].reduce(x))
                        elif m.dense:
                            y = (x @ m.W.float().T).double() * self.scale_of(m)
                            partial[k] = partial[k] + y.T @ y
                        else:
                            partial[k].append(x @ m.A.float().T)

            return pre

        by_block: dict[int, list[str]] = {}
        by_path: dict[str, list[str]] = {}
        for m in self._modules:
            (by_block.setdefault(m.block, []) if m.block is not None else by_path.setdefault(str(m.path), [])).append(m.module)
        for b, keys in by_block.items():
            handles.append(blocks[b].register_forward_pre_hook(grab(keys), with_kwargs=True))
        for path, keys in by_path.items():
            handles.append(model.get_submodule(path).register_forward_pre_hook(grab(keys), with_kwargs=True))
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            # Shortest first, in chunks of at most PROBE_CHUNK: each chunk pads to its own longest example.
            # On real text one 64-example chunk is ~2.4x the non-pad tokens; sorted chunks of 16 are ~1.2x.
            lengths = np.fromiter(map(len, self.data.features["input_ids"]), dtype=np.int64, count=len(self.data))
            idx = np.argsort(lengths, kind="stable")
            chunk = max(1, min(self.chunk_size, PROBE_CHUNK))
            autocast = _stored_dtype_autocast(model, device)
            for start in range(0, len(idx), chunk):
                batch = collate(self.data, idx[start : start + chunk])
                batch.pop("labels")
                batch = {k: v.to(device) for k, v in batch.items()}
                mask_box[:] = [batch["attention_mask"]]
                with autocast:
                    model(**batch)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        out = {}
        for m in self._modules:
            if m.module in updates:
                out[m.module] = updates[m.module].feature_svdvals(partial[m.module])
            elif m.dense:
                out[m.module] = gram_svdvals(partial[m.module])
            else:
                out[m.module] = lowrank_feature_svdvals(torch.cat(partial[m.module]), m.B.float(), self.scale_of(m))
        return out

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": "spectra",
            "tables": ["spectra", "sfs"],
            "reads_at": "on_epoch_end" + (f" and every {self.every_steps} steps" if self.every_steps else ""),
            "sources": ["weights"] + (["features"] if self.features else []),
            "unmeasured": dict(self.unmeasured),
            "sfs_k": list(self.ks),
            "probe_batch": None if self.data is None else {
                "examples": len(self.data),
                "non_pad_tokens": int(sum(map(len, self.data.features["input_ids"]))),
                "train_indices": self.probe_indices,
            },
        }


def build(ctx: ProbeContext) -> SpectralProbe:
    """The registry's factory: spectra of every adapter map at epoch ends (and every ``spectra_every`` steps)."""
    return SpectralProbe(scaling=ctx.scaling, lora_scaling=ctx.lora_scaling, layers_path=ctx.layers_path, probe_data=ctx.probe_data,
                         ks=ctx.ks, every_steps=ctx.spectra_every, chunk_size=ctx.chunk, probe_indices=ctx.probe_indices)


def probe_batch(cfg: Any, train: Encoded | None) -> tuple[Encoded | None, list[int] | None]:
    """The spectral probe batch: ``spectra_examples`` training examples drawn with ``spectra_seed``."""
    from lor2c_probe.train.batches import take

    if train is None:
        return None, None
    n = min(cfg.probes.spectra_examples, len(train))
    idx = np.sort(np.random.default_rng(cfg.probes.spectra_seed).choice(len(train), size=n, replace=False))
    return take(train, idx), [int(i) for i in idx]
