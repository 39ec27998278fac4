"""Run configuration: frozen dataclasses validated on construction, round-tripped through manifest.json.

Policies (decisions.md items 1 and 9) fill the optimizer fields a user leaves unset:
``paper`` uses one plain AdamW for every parameter; ``reference`` reproduces the released LoR2C code
(weight decay 0.01, head at half the learning rate, LoR2C dropout 0.1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import ConfigError

POLICIES: dict[str, dict[str, float]] = {
    # The paper names no weight decay, head learning rate or LoR2C dropout: we use the neutral values.
    "paper": {"weight_decay": 0.0, "head_lr_scale": 1.0, "residual_dropout": 0.05},
    # run_glue_lor2c.py: AdamW built by hand (torch default wd 0.01), head at lr/2, dropout 0.1 hard-coded.
    "reference": {"weight_decay": 0.01, "head_lr_scale": 0.5, "residual_dropout": 0.1},
}
LORA_DROPOUT = 0.05  # the reference's --lora_dropout for q,v LoRA, under both policies
ON_NONFINITE = ("stop", "skip-step")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BASE_DTYPES = ("fp32", "bf16", "fp16")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


def _positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number; got {value!r}")


def _fraction(name: str, value: Any, *, hi_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value and (
        value < 1 if hi_open else value <= 1
    )
    if not ok:
        raise ConfigError(f"{name} must be in [0, 1{')' if hi_open else ']'}; got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


@dataclass(frozen=True)
class AdapterConfig:
    """Which method to attach and its size. ``dropout`` acts on the adapter's input."""

    method: str = "lor2c"
    rank: int = 8  # the paper's r for RoBERTa (Table I)
    alpha: float = 16.0  # s = alpha / r = 2, as in the paper's GLUE runs
    dropout: float = 0.05
    pre_num: int = 4  # ResLoRA: earlier layers a shortcut reaches back (-1: all); 4 as in its GLUE script
    target_modules: tuple[str, ...] | None = None  # PEFT methods' targets; None: PEFT's default for the model type
    peft_config: str | None = None  # --method peft: a PEFT config JSON (any PEFT method)

    def __post_init__(self) -> None:
        _choice("method", self.method, list(METHODS))
        if self.target_modules is not None:
            names = tuple(self.target_modules) if not isinstance(self.target_modules, str) else tuple(self.target_modules.split(","))
            names = tuple(n.strip() for n in names if isinstance(n, str) and n.strip())
            if not names:
                raise ConfigError(f"target_modules must name at least one module; got {self.target_modules!r}")
            object.__setattr__(self, "target_modules", names)  # a list when read back from manifest.json
        if self.peft_config is not None and self.method != "peft":
            raise ConfigError(f"--peft-config FILE.json goes with --method peft; got --method {self.method}")
        _positive_int("rank", self.rank)
        _positive_float("alpha", self.alpha)
        _fraction("dropout", self.dropout)
        if isinstance(self.pre_num, bool) or not isinstance(self.pre_num, int) or (self.pre_num < 1 and self.pre_num != -1):
            raise ConfigError(f"pre_num must be a positive integer or -1 (every earlier layer); got {self.pre_num!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def peft_config_file(self) -> Path | None:
        """The --peft-config JSON: the file given, or adapter_config.json inside the folder given."""
        if self.peft_config is None:
            return None
        p = Path(self.peft_config)
        return p / "adapter_config.json" if p.is_dir() else p

    def nominal_rank(self) -> int:
        """The rank r, or a ``--peft-config`` file's own ``r`` (``init_r`` for AdaLoRA): the SFS k of the spectral probe."""
        if self.method == "peft" and self.peft_config:
            import json

            try:
                data = json.loads(self.peft_config_file().read_text())
            except (OSError, ValueError):
                return self.rank
            r = data.get("r") or data.get("init_r")
            return int(r) if isinstance(r, int) and r > 0 else self.rank
        return self.rank


@dataclass(frozen=True)
class TrainConfig:
    """The explicit training loop's knobs; defaults follow the paper's SST-2 row where it has one."""

    epochs: int = 3
    steps_per_epoch: int | None = None  # cap on optimizer steps per epoch, for quick runs
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    lr: float = 5e-4
    head_lr_scale: float = 1.0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float | None = 1.0  # None disables clipping
    max_length: int = 128
    seed: int = 17  # the reference scripts' seed
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on a CUDA device that supports it, else fp32
    base_dtype: str = "fp32"  # dtype the frozen pretrained weights are stored in; adapters and a new head stay fp32
    flush_every: int = 50  # optimizer steps between run-store flushes
    on_nonfinite: str = "stop"  # a non-finite loss or gradient norm: stop the run as diverged, or skip that update

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        if self.steps_per_epoch is not None:
            _positive_int("steps_per_epoch", self.steps_per_epoch)
        _positive_int("batch_size", self.batch_size)
        _positive_int("eval_batch_size", self.eval_batch_size)
        _positive_int("grad_accum", self.grad_accum)
        _positive_float("lr", self.lr)
        _positive_float("head_lr_scale", self.head_lr_scale)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a non-negative number; got {self.weight_decay!r}")
        _fraction("warmup_ratio", self.warmup_ratio)
        if self.max_grad_norm is not None:
            _positive_float("max_grad_norm", self.max_grad_norm)
        _positive_int("max_length", self.max_length)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer; got {self.seed!r}")
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("base_dtype", self.base_dtype, BASE_DTYPES)
        if self.base_dtype != "fp32" and self.precision not in ("auto", self.base_dtype):
            raise ConfigError(f"base_dtype {self.base_dtype} computes under {self.base_dtype} autocast: set precision {self.base_dtype} "
                              f"(or auto), or base_dtype fp32; got precision {self.precision}")
        _positive_int("flush_every", self.flush_every)
        _choice("on_nonfinite", self.on_nonfinite, ON_NONFINITE)


@dataclass(frozen=True)
class DataConfig:
    """Where examples come from. Sources without an eval split are split with ``split_seed``."""

    task: str = "rotten-tomatoes"
    data_dir: str | None = None  # GLUE: folder of the official TSV files
    train_file: str | None = None  # CSV/TSV/JSONL of the user's own data
    eval_file: str | None = None
    eval_fraction: float = 0.1
    split_seed: int = 0  # kept apart from the training seed so every run sees the same eval set
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    loss_on: str = "all"  # alpaca: loss on every token ("all", the reference's train_on_inputs) or the "response" only
    string_labels: bool = False  # custom: every label is a class name (numbers too), instead of refusing a mixed column

    def __post_init__(self) -> None:
        from lor2c_probe.data.tasks import FILE_TASKS, TASKS

        _choice("task", self.task, list(TASKS))
        _choice("loss_on", self.loss_on, ["all", "response"])
        if self.task == "custom" and self.train_file is None:
            raise ConfigError("task 'custom' needs --train-file (CSV, TSV or JSONL)")
        if self.task == "alpaca" and self.train_file is None:
            raise ConfigError("task 'alpaca' needs --train-file (Alpaca JSON: instruction, input, output)")
        if self.task not in FILE_TASKS and (self.train_file or self.eval_file):
            raise ConfigError("--train-file/--eval-file are for your own data: use them with --task custom or alpaca")
        if self.loss_on != "all" and self.task != "alpaca":
            raise ConfigError("--loss-on is for instruction tuning (--task alpaca)")
        if self.string_labels and self.task != "custom":
            raise ConfigError("--string-labels is for your own data files (--task custom)")
        if self.eval_file is not None and self.train_file is None:
            raise ConfigError("--eval-file needs --train-file")
        if not (0 < self.eval_fraction < 1):
            raise ConfigError(f"eval_fraction must be in (0, 1); got {self.eval_fraction!r}")
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))


BUILT_IN_PROBES = ("grads", "activations", "spectra")  # flags below; other registered probes are listed in ``extra``


@dataclass(frozen=True)
class ProbeConfig:
    """Which probes record during training, and how often (every N optimizer steps)."""

    grads: bool = True  # per-module gradient statistics -> `grads` table
    activations: bool = True  # dL/dh_i per block input -> `activation_grads` table
    every: int = 1
    # dL/dh_0 (below frozen embeddings) costs block 0's backward, so it is read every Nth recorded step.
    bottom_every: int = 10
    spectra: bool = True  # weight + feature spectra -> `spectra` and `sfs` tables, at each epoch end
    spectra_every: int = 0  # also every N optimizer steps (0 = epoch ends only)
    spectra_examples: int = 64  # probe batch: this many training examples ...
    spectra_seed: int = 0  # ... drawn with this seed (kept apart from the training seed)
    extra: tuple[str, ...] = ()  # registered probes beyond the built-in three (lor2c_probe.probes.register)
    log_to: tuple[str, ...] = ()  # live sinks fed at every flush (lor2c_probe.sinks.SINKS): tensorboard, wandb, mlflow

    def __post_init__(self) -> None:
        from lor2c_probe.sinks import SINKS

        object.__setattr__(self, "log_to", tuple(dict.fromkeys(s.strip() for s in self.log_to if s.strip())))
        bad = [s for s in self.log_to if s not in SINKS]
        if bad:
            raise ConfigError(f"unknown --log-to sink {bad[0]!r}; choose from: {', '.join(SINKS)}")
        _positive_int("probe every", self.every)
        _positive_int("bottom_every", self.bottom_every)
        _positive_int("spectra_examples", self.spectra_examples)
        if isinstance(self.spectra_every, bool) or not isinstance(self.spectra_every, int) or self.spectra_every < 0:
            raise ConfigError(f"spectra_every must be a non-negative integer; got {self.spectra_every!r}")
        object.__setattr__(self, "extra", tuple(self.extra))  # a list when read back from manifest.json

    @classmethod
    def parse(cls, names: str, every: int = 1) -> ProbeConfig:
        """From a comma list such as "grads,activations", "grads" or "none"."""
        from lor2c_probe.probes import PROBES

        chosen = {n.strip() for n in names.split(",") if n.strip()}
        if chosen == {"none"}:
            chosen = set()
        unknown = sorted(chosen - set(PROBES))
        if unknown:
            raise ConfigError(f"unknown probe {unknown[0]!r}; choose from: {', '.join(PROBES)} (or none)")
        extra = tuple(n for n in PROBES if n in chosen and n not in BUILT_IN_PROBES)
        return cls(grads="grads" in chosen, activations="activations" in chosen, spectra="spectra" in chosen, every=every, extra=extra)

    @property
    def names(self) -> tuple[str, ...]:
        """Every probe this configuration records."""
        return tuple(n for n in BUILT_IN_PROBES if getattr(self, n)) + tuple(self.extra)


@dataclass(frozen=True)
class StructureConfig:
    """Merges and injections (MergeLoR2C / InjectLoR2C / IMLoR2C). Unset policy fields come from RunConfig.policy."""

    merges: int = 0
    injections: int = 0
    schedule: str = "epoch"  # or "step" (long single-epoch runs)
    source: str | None = None  # the score's spectra: features | weights
    score: str | None = None  # sfs | head_share
    k: int | None = None
    inject_rule: str | None = None  # min | max
    merge_keep: str | None = None  # more_information | lower
    emulate_reference_bugs: bool = False  # merged module frozen, injected LoRA never trained (ablation)
    loss_window: int = 10  # optimizer steps of training loss averaged before and after each event

    def __post_init__(self) -> None:
        for name in ("merges", "injections"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be a non-negative integer; got {v!r}")
        _choice("schedule", self.schedule, ["epoch", "step"])
        _positive_int("loss_window", self.loss_window)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run; stored verbatim in manifest.json."""

    model: str | None = None  # hub id or local path; None = the embedded all-MiniLM-L6-v2
    layers_path: str | None = None  # the blocks' ModuleList when generic discovery cannot tell (--layers-path)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    policy: str = "paper"
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)

    def __post_init__(self) -> None:
        _choice("policy", self.policy, list(POLICIES))
        method = METHODS[self.adapter.method]
        if self.adapter.target_modules and not (method.peft or method.dormant_lora) or (self.adapter.target_modules and method.name == "peft"):
            raise ConfigError(f"--target-modules sets the layers a PEFT method adapts (and an injected LoRA); {method.name} "
                              "does not use it" + (": the --peft-config file names its own targets" if method.name == "peft" else ""))
        if self.structure.merges and not method.can_merge:
            able = ", ".join(m.name for m in METHODS.values() if m.can_merge)
            raise ConfigError(f"--merges needs a method that can merge ({able}); got {self.adapter.method}")
        if self.structure.injections and not method.can_inject:
            able = ", ".join(m.name for m in METHODS.values() if m.can_inject)
            raise ConfigError(f"--injections needs a method that can inject ({able}); got {self.adapter.method}")

    def structure_policy(self):
        """The active StructurePolicy: the named policy with this run's overrides applied."""
        from dataclasses import replace as _replace

        from lor2c_probe.structure.policy import POLICIES as STRUCTURE

        base = STRUCTURE[self.policy]
        overrides = {f: getattr(self.structure, f) for f in ("source", "score", "k", "inject_rule", "merge_keep")}
        return _replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            model=d.get("model"),
            layers_path=d.get("layers_path"),
            adapter=AdapterConfig(**d["adapter"]),
            train=TrainConfig(**d["train"]),
            data=DataConfig(**d["data"]),
            policy=d["policy"],
            probes=ProbeConfig(**d.get("probes", {})),
            structure=StructureConfig(**d.get("structure", {})),
        )


def resolve_policy(
    policy: str, method: str, *, dropout: float | None, weight_decay: float | None, head_lr_scale: float | None
) -> tuple[dict[str, float], dict[str, str]]:
    """Fill unset policy fields. Returns (values, source per field: 'policy' or 'user')."""
    _choice("policy", policy, list(POLICIES))
    p = POLICIES[policy]
    method_dropout = LORA_DROPOUT if method in METHODS and METHODS[method].lora_dropout else p["residual_dropout"]
    given = {"dropout": dropout, "weight_decay": weight_decay, "head_lr_scale": head_lr_scale}
    defaults = {"dropout": method_dropout, "weight_decay": p["weight_decay"], "head_lr_scale": p["head_lr_scale"]}
    values = {k: (v if v is not None else defaults[k]) for k, v in given.items()}
    sources = {k: ("user" if v is not None else "policy") for k, v in given.items()}
    return values, sources


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"a.b.c": leaf}: how configurations are compared field by field (ranks, studies)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}
