"""Memory planning for a training run, before renting GPUs: ``lor2c-probe params --arch llama-2-7b --memory``.

Per GPU (data-parallel replicas each hold everything below for their micro-batch):
- frozen weights: the exact parameter count (the model built on the meta device, no memory) times the
  stored dtype (`train --base-dtype`: fp32 by default, or bf16/fp16 under autocast in that dtype);
- adapters (+ a classification head): fp32 values, fp32 gradients, AdamW's two fp32 moments;
- saved activations: what autograd keeps for backward, *measured* with saved-tensor hooks on the CPU
  under the run's autocast, at the true width, at two token counts, each fitted as a + b * tokens:
  the head (0 blocks, input requiring grad), a block whose input requires grad (as every block above
  an adapter does) and the first block, whose input comes from the frozen embeddings (under LoR2C
  nothing inside it needs a gradient; under LoRA its q/v adapters do). Scaled to first + (L - 1) blocks
  and to micro-batch x length tokens. With fp32 weights under autocast it includes the half-precision
  weight copies autocast saves for backward; weights saved by reference are not counted twice;
- recorder buffers: the probes' per-step device rows until a flush (tiny, shown for completeness); the
  recorder's volume on disk is reported apart (it is disk, not GPU memory).
Not included: allocator fragmentation, CUDA context (~0.5 GiB), transient buffers of the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lor2c_probe.config import ConfigError

# Bundled configs (from each model's config.json); no weights are needed to plan.
ARCH_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "minilm": ("bert", dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)),
    "bert-base": ("bert", dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    "roberta-base": ("roberta", dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                     max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                                     eos_token_id=2)),
    "roberta-large": ("roberta", dict(vocab_size=50265, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                                      max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)),
    "llama-1b": ("llama", dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                               num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5)),  # TinyLlama-1.1B; the bench's llama-1b shape
    "llama-2-7b": ("llama", dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                                 num_key_value_heads=32, max_position_embeddings=4096)),
    "llama-2-13b": ("llama", dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                                  num_key_value_heads=40, max_position_embeddings=4096)),
    "llama-2-70b": ("llama", dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                                  num_key_value_heads=8, max_position_embeddings=4096)),
}
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GPU_SIZES_GB = (24, 40, 48, 80, 141)  # common cards (decimal GB, as sold): RTX 4090/A10, A100-40G, L40S/A6000, A100/H100-80G, H200
CUDA_CONTEXT = 2**29  # ~0.5 GiB a CUDA context takes besides the tensors
TOKENS = (8, 16)  # token counts of the two measurements the activation fit uses
# Parquet bytes per adapter module per logged step with grads + activations probes and metrics, measured by
# `lor2c-probe bench` (benchmarks/results/bench_cpu.json: 278 B on MiniLM, 172-173 B on the roberta-base shape).
RECORD_BYTES_PER_MODULE_STEP = 278


@dataclass(frozen=True)
class MemoryPlan:
    method: str
    rank: int
    batch_size: int  # micro-batch per GPU
    seq_len: int
    precision: str  # compute precision: fp32, or bf16 / fp16 autocast
    weights_dtype: str = "fp32"
    target_modules: tuple[str, ...] | None = None  # PEFT methods' targets (None: PEFT's default for the model type)
    layers_path: str | None = None  # the blocks, when discovery cannot tell

    def __post_init__(self) -> None:
        from lor2c_probe.adapters import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        for name in ("rank", "batch_size", "seq_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer; got {v!r}")
        for name in ("precision", "weights_dtype"):
            if getattr(self, name) not in BYTES:
                raise ConfigError(f"{name} must be one of fp32, bf16, fp16; got {getattr(self, name)!r}")
        if self.weights_dtype not in ("fp32", self.precision):
            raise ConfigError(f"--base-dtype {self.weights_dtype} needs --precision {self.weights_dtype}; got {self.precision}")


def arch_config(arch: str) -> Any:
    """A bundled shape's config, or any config.json: a file, a model folder, or a hub id already in the local cache."""
    from pathlib import Path

    from transformers import AutoConfig

    if arch in ARCH_CONFIGS:
        model_type, kw = ARCH_CONFIGS[arch]
        return AutoConfig.for_model(model_type, **kw)
    from lor2c_probe.assets import ASSETS, fetched

    if arch in ASSETS and fetched(arch) is not None:
        arch = str(fetched(arch))
    p = Path(arch).expanduser()
    try:
        if p.is_file():
            return AutoConfig.from_pretrained(str(p))
        return AutoConfig.from_pretrained(str(p) if p.is_dir() else arch, local_files_only=True)
    except (OSError, ValueError) as e:
        if p.exists():
            raise ConfigError(f"--arch {arch}: cannot read a config.json: {str(e).splitlines()[0]}") from None
        raise ConfigError(f"unknown --arch {arch!r}: not a bundled shape ({', '.join(ARCH_CONFIGS)}), a config.json, a model folder "
                          "or a hub id in the local cache") from None


def meta_model(config: Any, layers_path: str | None = None, targets: tuple[str, ...] | None = None) -> tuple[Any, Any]:
    """(task model, backbone) at full depth on the meta device: shapes without memory."""
    return _model(config, config.num_hidden_layers, "meta", layers_path=layers_path, targets=targets)


def _model(config: Any, layers: int, device: str, num_labels: int = 2, *, layers_path: str | None = None,
           targets: tuple[str, ...] | None = None) -> tuple[Any, Any]:
    """(task model, backbone) with ``layers`` blocks; the causal LM for decoders, a classifier for encoders."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from lor2c_probe.blocks import is_decoder_only
    from lor2c_probe.models import backbone_of

    cfg = copy.deepcopy(config)
    cfg.num_hidden_layers = layers
    causal = is_decoder_only(cfg)
    if not causal:
        cfg.num_labels = num_labels
    with torch.device(device):
        model = (AutoModelForCausalLM if causal else AutoModelForSequenceClassification).from_config(cfg)
    return model, backbone_of(model, causal=causal, layers_path=layers_path, targets=targets)


def _attach(model: Any, backbone: Any, plan: MemoryPlan, device: str) -> Any:
    from lor2c_probe.adapters import get_method
    from lor2c_probe.config import AdapterConfig

    with torch.device(device):
        return get_method(plan.method).attach(model, backbone, AdapterConfig(method=plan.method, rank=plan.rank, alpha=2.0 * plan.rank,
                                                                               target_modules=plan.target_modules))


def parameter_counts(config: Any, plan: MemoryPlan) -> dict[str, int]:
    """Exact counts from the full model built on the meta device (no memory is allocated)."""
    from lor2c_probe.record.naming import classify, is_head

    model, bb = _model(config, config.num_hidden_layers, "meta", layers_path=plan.layers_path, targets=plan.target_modules)
    model = _attach(model, bb, plan, "meta")
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    head = sum(v for n, v in trainable.items() if is_head(n))
    modules = {classify(n).module for n in trainable if not is_head(n)}
    return {"total": sum(p.numel() for p in model.parameters()), "adapters": sum(trainable.values()) - head, "head": head,
            "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad), "modules": len(modules)}


def saved_bytes(model: Any, config: Any, tokens: int, precision: str, causal: bool, input_grad: bool = True) -> int:
    """Bytes autograd saves for backward in one training forward of ``tokens`` tokens (1 x tokens), on the CPU
    under ``precision`` autocast; ``input_grad``: the embedding output is a leaf that requires grad (else it is
    frozen, as in training). Storages counted once."""
    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights saved by reference cost nothing extra

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (1, tokens), generator=g)
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(input_grad)
    labels = ids if causal else torch.zeros(1, dtype=torch.long)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        model(inputs_embeds=emb, labels=labels)
    return sum(seen.values())


def activation_fit(config: Any, plan: MemoryPlan) -> dict[str, float]:
    """{head,layer,first}_{const,per_token} in bytes, from 0- and 1-block models at true width; from 1- and 2-block
    models where the family cannot run without blocks (GPT-2's forward needs one)."""
    torch.manual_seed(0)
    try:
        out = {"0": _saved(config, plan, 0)[0]}
        out["1"], out["first"] = _saved(config, plan, 1)
    except (RuntimeError, UnboundLocalError, IndexError, ValueError):
        one, first = _saved(config, plan, 1)
        two, _ = _saved(config, plan, 2)
        layer = _minus(two, one)
        out = {"0": _minus(one, layer), "1": one, "first": first}
    dn = TOKENS[1] - TOKENS[0]
    fit: dict[str, float] = {}
    for part, (b1, b2) in (("head", out["0"]), ("layer", _minus(out["1"], out["0"])), ("first", _minus(out["first"], out["0"]))):
        fit[f"{part}_per_token"] = (b2 - b1) / dn
        fit[f"{part}_const"] = b1 - fit[f"{part}_per_token"] * TOKENS[0]
    return fit


def _saved(config: Any, plan: MemoryPlan, layers: int) -> tuple[list[int], list[int] | None]:
    """Saved bytes per TOKENS of a ``layers``-block model (input needing grad), and with block 0's input not."""
    model, bb = _model(config, layers, "cpu", layers_path=plan.layers_path, targets=plan.target_modules)
    if plan.weights_dtype != "fp32":  # frozen weights stored in half precision: autocast makes no copies
        model.to({"bf16": torch.bfloat16, "fp16": torch.float16}[plan.weights_dtype])
    if layers:
        model = _attach(model, bb, plan, "cpu")
    else:
        model.requires_grad_(False)
    model.train()
    saved = [saved_bytes(model, config, n, plan.precision, bb.causal) for n in TOKENS]
    first = [saved_bytes(model, config, n, plan.precision, bb.causal, input_grad=False) for n in TOKENS] if layers else None
    return saved, first


def _minus(a: list[int], b: list[int]) -> list[int]:
    return [x - y for x, y in zip(a, b)]


def activations(fit: dict[str, float], layers: int, tokens: int) -> float:
    """Saved-activation bytes of a ``layers``-block model on ``tokens`` tokens per step."""
    at = lambda part: fit[f"{part}_const"] + fit[f"{part}_per_token"] * tokens  # noqa: E731
    return at("head") + at("first") + (layers - 1) * at("layer")


def smallest_gpu(total: float) -> int | None:
    """The smallest common GPU size (GB) that holds ``total`` bytes plus a CUDA context; None if none does."""
    return next((gb for gb in GPU_SIZES_GB if total + CUDA_CONTEXT <= gb * 10**9), None)


def plan_memory(config: Any, plan: MemoryPlan, *, gpus: int = 1) -> dict[str, Any]:
    """Bytes per GPU by component, and the inputs they came from."""
    counts = parameter_counts(config, plan)
    fit = activation_fit(config, plan)
    tokens = plan.batch_size * plan.seq_len
    L = int(config.num_hidden_layers)
    trainable = counts["adapters"] + counts["head"]
    parts = {
        "frozen weights": counts["frozen"] * BYTES[plan.weights_dtype],
        "adapters + head (fp32)": trainable * 4,
        "their gradients (fp32)": trainable * 4,
        "AdamW moments (2 x fp32)": trainable * 8,
        "saved activations": activations(fit, L, tokens),
        "probe buffers (per step until a flush, x 50)": 50 * 3 * 4 * 2 * max(1, L),  # (3, tensors) floats per step
    }
    return {"parts": parts, "total": sum(parts.values()), "counts": counts, "fit": fit, "tokens_per_gpu_step": tokens,
            "record_bytes_per_1000_steps": 1000 * counts["modules"] * RECORD_BYTES_PER_MODULE_STEP,
            "gpus": gpus, "global_batch": plan.batch_size * gpus}
