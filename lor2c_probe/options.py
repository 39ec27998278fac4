"""Every training option, declared once.

``TRAINING`` is the single list: the CLI generates each command's typer options from it (with the help text,
the default and the choices), studies accept exactly its names as keys, and ``config_from_options`` turns
given values into the validated ``RunConfig``. Defaults are read from the config dataclasses, never copied.
``None`` means "not given" (so ``--resume`` can refuse options, and policies fill what the user left unset).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable

from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import ConfigError
from lor2c_probe.config import (BASE_DTYPES, DEVICES, ON_NONFINITE, POLICIES, PRECISIONS, AdapterConfig, DataConfig, ProbeConfig,
                                RunConfig, StructureConfig, TrainConfig, resolve_policy)

# What the comparison commands (gradients, spectrum, sfs) train by default: minutes on 2 CPU cores per method.
QUICK_DEFAULTS = {"epochs": 3, "steps_per_epoch": 100, "batch_size": 16, "lr": 1e-3, "max_eval_examples": 500}
# `sfs` trains IMLoR2C with events on the step schedule and spectra often enough to trace them. 2 merges + 2 injections
# always fit 6 blocks (each merge uses at most two unmerged modules); a method gets only the events it can make.
SFS_DEFAULTS = {**QUICK_DEFAULTS, "method": "im-lor2c", "merges": 2, "injections": 2, "schedule": "step", "spectra_every": 10}


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == name)


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # int, float, str, bool (a flag) or Path
    help: str
    default: Any = None  # the value used when the option is not given (shown in --help)
    shown: str | None = None  # shown instead of ``default`` when it is not one value (e.g. "set by --policy")
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> bool:
        return self.kind is bool

    def help_text(self, default: Any = None) -> str:
        d = self.default if default is None else default
        shown = self.shown if self.shown is not None and default is None else d
        return self.help + ("" if self.flag or shown is None else f" [default: {shown}]")


def _tasks() -> tuple[str, ...]:
    from lor2c_probe.data.tasks import TASKS

    return tuple(TASKS)


def _sfs(field: str) -> str:
    from lor2c_probe.structure.policy import POLICIES as STRUCTURE

    paper, reference = (getattr(STRUCTURE[p], field) for p in ("paper", "reference"))
    return f"set by --policy: {paper} (paper) or {reference} (reference)"


T, D, A, S, P = TrainConfig, DataConfig, AdapterConfig, StructureConfig, ProbeConfig
TRAINING: tuple[Option, ...] = (
    Option("method", str, "Adapter method.", _default(A, "method"), choices=tuple(METHODS)),
    Option("model", str, "HF hub id or local folder.", shown="the embedded all-MiniLM-L6-v2"),
    Option("layers_path", str, "Dotted path of the model's block ModuleList, when discovery cannot tell (e.g. transformer.h).",
           shown="found: the longest stack of same-class blocks"),
    Option("target_modules", str, "PEFT methods' target modules, comma-separated (e.g. query,value or c_attn).",
           shown="PEFT's default for the model type"),
    Option("peft_config", Path, "--method peft: a PEFT config JSON (any PEFT method, as saved by PeftConfig.save_pretrained)."),
    Option("task", str, "Task: the embedded Rotten Tomatoes, a GLUE task, your own file (custom) or instruction tuning (alpaca).",
           _default(D, "task"), choices=_tasks()),
    Option("data_dir", Path, "Folder with the official GLUE TSV files."),
    Option("train_file", Path, "Your training data: CSV/TSV/JSONL with --task custom, Alpaca JSON with --task alpaca."),
    Option("eval_file", Path, "Your eval data; without it a seeded split of --train-file is used."),
    Option("max_train_examples", int, "Use only the first N training examples.", shown="all"),
    Option("max_eval_examples", int, "Use only the first N eval examples.", shown="all"),
    Option("loss_on", str, "--task alpaca: loss on all tokens (the reference) or on the response only.", _default(D, "loss_on"),
           choices=("all", "response")),
    Option("string_labels", bool, "--task custom: read every label as a class name (a column mixing numbers and words is refused otherwise)."),
    Option("epochs", int, "Training epochs.", _default(T, "epochs")),
    Option("steps_per_epoch", int, "Cap on optimizer steps per epoch, for quick runs; 0 = full epochs.", shown="full epochs"),
    Option("batch_size", int, "Examples per optimizer step (the global batch under torchrun).", _default(T, "batch_size")),
    Option("grad_accum", int, "Micro-batches per optimizer step.", _default(T, "grad_accum")),
    Option("lr", float, "Peak learning rate.", _default(T, "lr")),
    Option("rank", int, "Adapter rank r.", _default(A, "rank")),
    Option("alpha", float, "Adapter alpha; scaling s = alpha / r.", _default(A, "alpha")),
    Option("dropout", float, "Adapter input dropout.", shown="set by --policy"),
    Option("pre_num", int, "ResLoRA: earlier layers a shortcut reaches (-1 = all).", _default(A, "pre_num")),
    Option("weight_decay", float, "AdamW weight decay.", shown="set by --policy: 0 (paper) or 0.01 (reference)"),
    Option("head_lr_scale", float, "Head lr = lr * this.", shown="set by --policy: 1 (paper) or 0.5 (reference)"),
    Option("warmup_ratio", float, "Share of steps with linear warmup.", _default(T, "warmup_ratio")),
    Option("max_grad_norm", float, "Clip the global gradient norm; 0 disables.", _default(T, "max_grad_norm")),
    Option("max_length", int, "Truncate inputs to this many tokens.", _default(T, "max_length")),
    Option("seed", int, "Seed for init, dropout and data order.", _default(T, "seed")),
    Option("policy", str, "paper, or reference: the released code's optimizer quirks.", "paper", choices=tuple(POLICIES)),
    Option("device", str, "Device.", _default(T, "device"), choices=DEVICES),
    Option("precision", str, "Mixed precision needs CUDA; auto picks bf16 where the GPU supports it.", _default(T, "precision"),
           choices=PRECISIONS),
    Option("base_dtype", str, "Store the frozen pretrained weights in this dtype (half: needs that --precision; adapters stay fp32).",
           _default(T, "base_dtype"), choices=BASE_DTYPES),
    Option("flush_every", int, "Optimizer steps between writes of the run store.", _default(T, "flush_every")),
    Option("on_nonfinite", str, "A non-finite loss or gradient norm: stop (the run ends as diverged) or skip-step (skip that update, "
           "as AMP's loss scaler does; one host sync per step).", _default(T, "on_nonfinite"), choices=ON_NONFINITE),
    Option("probes", str, "Probes to record: a comma list of grads, activations, spectra, histograms, or none.", "grads,activations,spectra"),
    Option("probe_every", int, "Record the probes every N optimizer steps.", _default(P, "every")),
    Option("log_to", str, "Also stream every flush live to these sinks: a comma list of tensorboard, wandb (offline), mlflow "
           "(a local store); written under the run directory."),
    Option("spectra_every", int, "Spectra also every N optimizer steps, besides each epoch end (0 = epoch ends only).",
           _default(P, "spectra_every")),
    Option("merges", int, "Merges M (merge-lor2c, im-lor2c, im-share-lor2c).", _default(S, "merges")),
    Option("injections", int, "Injections J (inject-lor2c, im-lor2c, im-share-lor2c).", _default(S, "injections")),
    Option("schedule", str, "When merges and injections happen: at epoch ends, or at optimizer steps (long single-epoch runs).",
           _default(S, "schedule"), choices=("epoch", "step")),
    Option("sfs_source", str, "Spectra the merge/inject score is computed from.", shown=_sfs("source"), choices=("features", "weights")),
    Option("sfs_score", str, "Merge/inject score.", shown=_sfs("score"), choices=("sfs", "head_share")),
    Option("sfs_k", int, "k of the score.", shown="2"),
    Option("inject_rule", str, "Inject into the module with the smallest (min) or largest (max) score.", shown=_sfs("inject_rule"),
           choices=("min", "max")),
    Option("merge_keep", str, "A merged module keeps the factors of the member with more information, or of the lower layer.",
           shown=_sfs("merge_keep"), choices=("more_information", "lower")),
    Option("emulate_reference_bugs", bool, "Ablation: merged module frozen and injected LoRA never trained, as in the released code."),
)
BY_NAME = {o.name: o for o in TRAINING}
NAMES = tuple(BY_NAME)

TRAIN_FIELDS = ("epochs", "steps_per_epoch", "batch_size", "grad_accum", "lr", "warmup_ratio", "max_length", "seed", "device",
                "precision", "base_dtype", "flush_every", "on_nonfinite")
DATA_FIELDS = ("task", "data_dir", "train_file", "eval_file", "max_train_examples", "max_eval_examples", "loss_on", "string_labels")


def select(names: Iterable[str] | None = None, *, without: Iterable[str] = ()) -> tuple[Option, ...]:
    """The options named (in declaration order), or all but ``without``."""
    skip = set(without)
    chosen = set(names) if names is not None else set(NAMES)
    unknown = chosen - set(NAMES)
    if unknown:
        raise KeyError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return tuple(o for o in TRAINING if o.name in chosen and o.name not in skip)


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The options a user actually gave (a flag left off counts as not given)."""
    return {k: v for k, v in options.items() if v is not None and not (BY_NAME.get(k) and BY_NAME[k].flag and v is False)}


def config_from_options(o: dict[str, Any]) -> tuple[RunConfig, dict[str, str]]:
    """The validated RunConfig from option values (None = not given); unset policy fields come from the policy.
    Returns it with the source of each policy field ('policy' or 'user')."""
    method = o.get("method") or _default(A, "method")
    if method == "peft" and o.get("peft_config") is None:
        raise ConfigError("--method peft needs --peft-config FILE.json (a PEFT config, e.g. from PeftConfig.save_pretrained)")
    policy = o.get("policy") or "paper"
    values, sources = resolve_policy(
        policy, method, dropout=o.get("dropout"), weight_decay=o.get("weight_decay"), head_lr_scale=o.get("head_lr_scale")
    )
    adapter = AdapterConfig(
        method=method,
        rank=o["rank"] if o.get("rank") is not None else _default(A, "rank"),
        alpha=o["alpha"] if o.get("alpha") is not None else _default(A, "alpha"),
        dropout=values["dropout"],
        pre_num=o["pre_num"] if o.get("pre_num") is not None else _default(A, "pre_num"),
        target_modules=o.get("target_modules") or None,
        peft_config=str(o["peft_config"]) if o.get("peft_config") is not None else None,
    )
    train_kw = {k: o[k] for k in TRAIN_FIELDS if o.get(k) is not None}
    if train_kw.get("steps_per_epoch") == 0:  # 0 = no cap: full epochs
        train_kw["steps_per_epoch"] = None
    if o.get("max_grad_norm") is not None:
        train_kw["max_grad_norm"] = o["max_grad_norm"] or None  # 0 disables clipping
    train = TrainConfig(**train_kw, weight_decay=values["weight_decay"], head_lr_scale=values["head_lr_scale"])
    data_kw = {k: (str(o[k]) if isinstance(o[k], Path) else o[k]) for k in DATA_FIELDS if o.get(k) is not None}
    data = DataConfig(**data_kw)
    structure = StructureConfig(
        merges=o.get("merges") or 0, injections=o.get("injections") or 0, schedule=o.get("schedule") or _default(S, "schedule"),
        source=o.get("sfs_source"), score=o.get("sfs_score"), k=o.get("sfs_k"), inject_rule=o.get("inject_rule"),
        merge_keep=o.get("merge_keep"), emulate_reference_bugs=bool(o.get("emulate_reference_bugs")),
    )
    probes = ProbeConfig.parse(o.get("probes") or BY_NAME["probes"].default, o.get("probe_every") or _default(P, "every"))
    if o.get("spectra_every") is not None:
        probes = replace(probes, spectra_every=o["spectra_every"])
    if o.get("log_to"):
        probes = replace(probes, log_to=tuple(o["log_to"].split(",")))
    run = RunConfig(model=o.get("model"), layers_path=o.get("layers_path") or None, adapter=adapter, train=train, data=data, policy=policy, probes=probes, structure=structure)
    run.structure_policy()  # validates the policy overrides now
    return run, sources
