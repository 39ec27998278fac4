"""The ``lor2c-probe`` command line: it parses and dispatches; heavy imports happen inside commands."""

from __future__ import annotations

import functools
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import UserError

app = typer.Typer(
    name="lor2c-probe",
    help="Gradient-flow and spectral analysis for parameter-efficient fine-tuning (LoRA, LoR2C and variants).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a UserError as one line on stderr and exit with its code (2 for bad input), with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: rows recorded so far are kept; continue with --resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


Method = typer.Option(help=f"Adapter method: {', '.join(METHODS)}.")

# Options shared by the commands that train; None means "not given" (so --resume can reject them).
Opt = Optional
ModelOpt = Annotated[Opt[str], typer.Option(help="HF hub id or local folder; default: the embedded all-MiniLM-L6-v2.")]
TaskOpt = Annotated[Opt[str], typer.Option(help="rotten-tomatoes (default), sst2, mrpc, rte, cola, stsb, qnli, custom, or alpaca (instruction tuning of a decoder).")]
LossOnOpt = Annotated[Opt[str], typer.Option(help="--task alpaca: loss on all tokens (the reference) or on the response only \\[default: all].")]
DataDirOpt = Annotated[Opt[Path], typer.Option(help="Folder with the official GLUE TSV files.")]
TrainFileOpt = Annotated[Opt[Path], typer.Option(help="Your training data: CSV/TSV/JSONL with --task custom, Alpaca JSON with --task alpaca.")]
EvalFileOpt = Annotated[Opt[Path], typer.Option(help="Your eval data; without it a seeded split of --train-file is used.")]
MaxTrainOpt = Annotated[Opt[int], typer.Option(help="Use only the first N training examples.")]
MaxEvalOpt = Annotated[Opt[int], typer.Option(help="Use only the first N eval examples.")]
EpochsOpt = Annotated[Opt[int], typer.Option(help="Training epochs.")]
StepsOpt = Annotated[Opt[int], typer.Option(help="Cap on optimizer steps per epoch, for quick runs; 0 = full epochs.")]
BatchOpt = Annotated[Opt[int], typer.Option(help="Examples per micro-batch.")]
AccumOpt = Annotated[Opt[int], typer.Option(help="Micro-batches per optimizer step \\[default: 1].")]
LrOpt = Annotated[Opt[float], typer.Option(help="Peak learning rate.")]
RankOpt = Annotated[Opt[int], typer.Option(help="Adapter rank r \\[default: 8].")]
AlphaOpt = Annotated[Opt[float], typer.Option(help="Adapter alpha; scaling s = alpha / r \\[default: 16].")]
DropoutOpt = Annotated[Opt[float], typer.Option(help="Adapter input dropout \\[default: set by --policy].")]
PreNumOpt = Annotated[Opt[int], typer.Option(help="ResLoRA: earlier layers a shortcut reaches (-1 = all) \\[default: 4].")]
WdOpt = Annotated[Opt[float], typer.Option(help="AdamW weight decay \\[default: set by --policy].")]
HeadLrOpt = Annotated[Opt[float], typer.Option(help="Head lr = lr * this \\[default: set by --policy].")]
WarmupOpt = Annotated[Opt[float], typer.Option(help="Share of steps with linear warmup \\[default: 0.06].")]
ClipOpt = Annotated[Opt[float], typer.Option(help="Clip the global gradient norm \\[default: 1.0]; 0 disables.")]
MaxLenOpt = Annotated[Opt[int], typer.Option(help="Truncate inputs to this many tokens \\[default: 128].")]
SeedOpt = Annotated[Opt[int], typer.Option(help="Seed for init, dropout and data order \\[default: 17].")]
PolicyOpt = Annotated[Opt[str], typer.Option(help="paper (default) or reference: the released code's optimizer quirks.")]
DeviceOpt = Annotated[Opt[str], typer.Option(help="auto (default), cpu or cuda.")]
PrecisionOpt = Annotated[Opt[str], typer.Option(help="auto, fp32, bf16 or fp16 (mixed precision needs CUDA).")]
BaseDtypeOpt = Annotated[Opt[str], typer.Option(help="Store the frozen pretrained weights in fp32, bf16 or fp16 (half: needs that --precision; "
                                                 "halves their memory, adapters stay fp32) \\[default: fp32].")]
NonFiniteOpt = Annotated[Opt[str], typer.Option(help="A non-finite loss or gradient norm: stop (the run ends as diverged) or skip-step "
                                                  "(skip that update, as AMP's loss scaler does; one host sync per step) \\[default: stop].")]
FlushOpt = Annotated[Opt[int], typer.Option(help="Optimizer steps between writes of the run store \\[default: 50].")]
ProbesOpt = Annotated[Opt[str], typer.Option(help="Probes to record, a comma list of grads, activations, spectra \\[default: all three], or none.")]
SpectraEveryOpt = Annotated[Opt[int], typer.Option(help="Spectra also every N optimizer steps, besides each epoch end \\[default: 0 = epoch ends only].")]
ProbeEveryOpt = Annotated[Opt[int], typer.Option(help="Record the probes every N optimizer steps \\[default: 1].")]
MergesOpt = Annotated[Opt[int], typer.Option(help="Merges M (merge-lor2c, im-lor2c) \\[default: 0].")]
InjectionsOpt = Annotated[Opt[int], typer.Option(help="Injections J (inject-lor2c, im-lor2c) \\[default: 0].")]
ScheduleOpt = Annotated[Opt[str], typer.Option(help="Event schedule: epoch (default) or step.")]
SfsSourceOpt = Annotated[Opt[str], typer.Option(help="Score source: features (paper) or weights (reference) \\[default: set by --policy].")]
SfsScoreOpt = Annotated[Opt[str], typer.Option(help="Score: sfs (paper) or head_share (reference) \\[default: set by --policy].")]
SfsKOpt = Annotated[Opt[int], typer.Option(help="k of the score \\[default: 2].")]
InjectRuleOpt = Annotated[Opt[str], typer.Option(help="Inject into the module with the min (paper) or max (reference) score.")]
MergeKeepOpt = Annotated[Opt[str], typer.Option(help="Merged module keeps the factors of: more_information (paper) or lower (reference).")]
BugsOpt = Annotated[bool, typer.Option(help="Ablation: merged module frozen and injected LoRA never trained, as in the released code.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing output directory.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]


@app.command()
@user_errors
def train(
    method: Annotated[Opt[str], Method] = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    eval_file: EvalFileOpt = None,
    max_train_examples: MaxTrainOpt = None,
    max_eval_examples: MaxEvalOpt = None,
    loss_on: LossOnOpt = None,
    string_labels: Annotated[bool, typer.Option(help="--task custom: read every label as a class name (a column mixing numbers "
                                                     "and words is refused otherwise).")] = False,
    epochs: Annotated[Opt[int], typer.Option(help="Training epochs \\[default: 3].")] = None,
    steps_per_epoch: StepsOpt = None,
    batch_size: Annotated[Opt[int], typer.Option(help="Examples per micro-batch \\[default: 32].")] = None,
    grad_accum: AccumOpt = None,
    lr: Annotated[Opt[float], typer.Option(help="Peak learning rate \\[default: 5e-4].")] = None,
    rank: RankOpt = None,
    alpha: AlphaOpt = None,
    dropout: DropoutOpt = None,
    pre_num: PreNumOpt = None,
    weight_decay: WdOpt = None,
    head_lr_scale: HeadLrOpt = None,
    warmup_ratio: WarmupOpt = None,
    max_grad_norm: ClipOpt = None,
    max_length: MaxLenOpt = None,
    seed: SeedOpt = None,
    policy: PolicyOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    base_dtype: BaseDtypeOpt = None,
    flush_every: FlushOpt = None,
    on_nonfinite: NonFiniteOpt = None,
    probes: ProbesOpt = None,
    probe_every: ProbeEveryOpt = None,
    spectra_every: SpectraEveryOpt = None,
    merges: MergesOpt = None,
    injections: InjectionsOpt = None,
    schedule: ScheduleOpt = None,
    sfs_source: SfsSourceOpt = None,
    sfs_score: SfsScoreOpt = None,
    sfs_k: SfsKOpt = None,
    inject_rule: InjectRuleOpt = None,
    merge_keep: MergeKeepOpt = None,
    emulate_reference_bugs: BugsOpt = False,
    out: Annotated[Opt[Path], typer.Option(help="Run directory \\[default: runs/<method>-<time>].")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    report: Annotated[bool, typer.Option(help="Write an HTML report into <out>/report at the end.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Train one adapter method and record it into a run directory (and its report)."""
    options = dict(locals())  # before any import below adds names
    options["emulate_reference_bugs"] = options["emulate_reference_bugs"] or None  # a flag: None when not given
    options["string_labels"] = options["string_labels"] or None
    from lor2c_probe.commands.train import TrainArgs, run_train

    for key in ("out", "overwrite", "resume", "quiet", "report"):
        options.pop(key)
    run_train(TrainArgs(options=options, out=out, overwrite=overwrite, resume=resume, quiet=quiet, report=report))


@app.command()
@user_errors
def gradients(
    methods: Annotated[str, typer.Option(help="Comma list of methods trained side by side.")] = "lor2c,lora",
    baseline: Annotated[Opt[str], typer.Option(help="Denominator method \\[default: lora if listed, else the last].")] = None,
    from_runs: Annotated[Opt[list[Path]], typer.Option(help="Analyse existing run directories instead of training (repeat the option).")] = None,
    stat: Annotated[str, typer.Option(help="Gradient statistic: mean_abs (the paper's mean gradient), l2 or max_abs.")] = "mean_abs",
    factor: Annotated[str, typer.Option(help="Module factor: all (element-weighted), A or B.")] = "all",
    model: ModelOpt = None,
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    eval_file: EvalFileOpt = None,
    max_train_examples: MaxTrainOpt = None,
    max_eval_examples: Annotated[Opt[int], typer.Option(help="Use only the first N eval examples \\[default: 500].")] = None,
    epochs: Annotated[Opt[int], typer.Option(help="Training epochs \\[default: 3].")] = None,
    steps_per_epoch: Annotated[Opt[int], typer.Option(help="Optimizer steps per epoch \\[default: 100]; 0 = full epochs.")] = None,
    batch_size: Annotated[Opt[int], typer.Option(help="Examples per micro-batch \\[default: 16].")] = None,
    grad_accum: AccumOpt = None,
    lr: Annotated[Opt[float], typer.Option(help="Peak learning rate \\[default: 1e-3].")] = None,
    rank: RankOpt = None,
    alpha: AlphaOpt = None,
    dropout: DropoutOpt = None,
    pre_num: PreNumOpt = None,
    weight_decay: WdOpt = None,
    head_lr_scale: HeadLrOpt = None,
    warmup_ratio: WarmupOpt = None,
    max_grad_norm: ClipOpt = None,
    max_length: MaxLenOpt = None,
    seed: SeedOpt = None,
    policy: PolicyOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    flush_every: FlushOpt = None,
    probe_every: ProbeEveryOpt = None,
    out: Annotated[Opt[Path], typer.Option(help="Output directory \\[default: runs/gradients-<time>].")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gradient flow, LoR2C vs LoRA: train with probes, then the ratio surface (paper Fig. 7) and dL/dh maps."""
    options = dict(locals())
    from lor2c_probe.commands.gradients import GradientsArgs, run_gradients

    run_gradients(GradientsArgs.from_options(options))


@app.command()
@user_errors
def params(
    arch: Annotated[str, typer.Option(help="roberta-base, roberta-large, bert-base, minilm, llama-1b, llama-2-7b, llama-2-13b or llama-2-70b.")] = "roberta-base",
    method: Annotated[Optional[str], Method] = None,
    rank: Annotated[int, typer.Option(help="Adapter rank r.")] = 8,
    merges: Annotated[int, typer.Option(help="Count after M merges (merge-capable methods); injections are parameter-neutral.")] = 0,
    memory: Annotated[bool, typer.Option(help="Also plan training memory per GPU for --method (measured on the CPU at true width; tens of seconds for 7B).")] = False,
    batch_size: Annotated[int, typer.Option(help="--memory: micro-batch per GPU.")] = 1,
    seq_len: Annotated[int, typer.Option(help="--memory: tokens per example.")] = 512,
    precision: Annotated[str, typer.Option(help="--memory: bf16, fp16 (autocast) or fp32.")] = "bf16",
    base_dtype: Annotated[str, typer.Option(help="--memory: dtype of the stored frozen weights (train --base-dtype).")] = "fp32",
    gpus: Annotated[int, typer.Option(help="--memory: data-parallel GPUs (each holds a replica).")] = 1,
) -> None:
    """Adapter parameter counts from bundled architecture shapes (no weights needed); --memory plans a run."""
    from lor2c_probe.commands.params import run_memory_plan, run_params

    if memory:
        run_memory_plan(arch, method, rank, batch_size=batch_size, seq_len=seq_len, precision=precision, base_dtype=base_dtype, gpus=gpus)
    else:
        run_params(arch, method, rank, merges)


@app.command()
@user_errors
def spectrum(
    runs: Annotated[Opt[list[Path]], typer.Argument(help="Recorded run directories to analyse; none = train --methods first.")] = None,
    methods: Annotated[str, typer.Option(help="Methods to train when no run is given.")] = "full-rank-residual,lor2c",
    source: Annotated[str, typer.Option(help="weights (the learned maps) or features (their outputs on the probe batch).")] = "weights",
    ks: Annotated[str, typer.Option(help="Top-k energy shares to report.")] = "1,2,4,8,16",
    model: ModelOpt = None,
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    eval_file: EvalFileOpt = None,
    max_train_examples: MaxTrainOpt = None,
    max_eval_examples: Annotated[Opt[int], typer.Option(help="Use only the first N eval examples \\[default: 500].")] = None,
    epochs: Annotated[Opt[int], typer.Option(help="Training epochs \\[default: 3].")] = None,
    steps_per_epoch: Annotated[Opt[int], typer.Option(help="Optimizer steps per epoch \\[default: 100]; 0 = full epochs.")] = None,
    batch_size: Annotated[Opt[int], typer.Option(help="Examples per micro-batch \\[default: 16].")] = None,
    lr: Annotated[Opt[float], typer.Option(help="Peak learning rate \\[default: 1e-3].")] = None,
    rank: RankOpt = None,
    alpha: AlphaOpt = None,
    seed: SeedOpt = None,
    policy: PolicyOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Opt[Path], typer.Option(help="Output directory \\[default: runs/spectrum-<time>].")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Low-rank evidence (paper Fig. 2): spectra of the learned residual maps against a same-norm control, and phi."""
    options = dict(locals())
    from lor2c_probe.commands.spectrum import SpectrumArgs, run_spectrum

    run_spectrum(SpectrumArgs.from_options(options))


@app.command()
@user_errors
def sfs(
    runs: Annotated[Opt[list[Path]], typer.Argument(help="Recorded run directories to analyse; none = train im-lor2c first.")] = None,
    k: Annotated[int, typer.Option(help="k of SFS_k to trace.")] = 2,
    source: Annotated[Opt[str], typer.Option(help="features or weights \\[default: the policy's score source].")] = None,
    method: Annotated[Opt[str], Method] = None,
    merges: Annotated[Opt[int], typer.Option(help="Merges M \\[default: 2].")] = None,
    injections: Annotated[Opt[int], typer.Option(help="Injections J \\[default: 2].")] = None,
    schedule: Annotated[Opt[str], typer.Option(help="step (default here) or epoch.")] = None,
    emulate_reference_bugs: BugsOpt = False,
    model: ModelOpt = None,
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    eval_file: EvalFileOpt = None,
    max_train_examples: MaxTrainOpt = None,
    max_eval_examples: Annotated[Opt[int], typer.Option(help="Use only the first N eval examples \\[default: 500].")] = None,
    epochs: Annotated[Opt[int], typer.Option(help="Training epochs \\[default: 3].")] = None,
    steps_per_epoch: Annotated[Opt[int], typer.Option(help="Optimizer steps per epoch \\[default: 100]; 0 = full epochs.")] = None,
    batch_size: Annotated[Opt[int], typer.Option(help="Examples per micro-batch \\[default: 16].")] = None,
    lr: Annotated[Opt[float], typer.Option(help="Peak learning rate \\[default: 1e-3].")] = None,
    rank: RankOpt = None,
    seed: SeedOpt = None,
    policy: PolicyOpt = None,
    device: DeviceOpt = None,
    spectra_every: Annotated[Opt[int], typer.Option(help="Spectra every N steps for the traces \\[default: 10].")] = None,
    out: Annotated[Opt[Path], typer.Option(help="Output directory \\[default: runs/sfs-<time>].")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """IMLoR2C with the SFS scheduler: merges/injections, the event log and SFS traces across events."""
    options = dict(locals())
    options["emulate_reference_bugs"] = options["emulate_reference_bugs"] or None
    from lor2c_probe.commands.sfs import SfsArgs, run_sfs

    run_sfs(SfsArgs.from_options(options))


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Recorded run directories (or a study/command output folder with runs/ inside).")],
    out: Annotated[Opt[Path], typer.Option(help="Report folder \\[default: <run>/report, or <parent of the runs>/report].")] = None,
    title: Annotated[Opt[str], typer.Option(help="Report title \\[default: the run labels].")] = None,
    baseline: Annotated[Opt[str], typer.Option(help="Denominator of the gradient ratio: a run label or method \\[default: lora if present].")] = None,
    stat: Annotated[str, typer.Option(help="Gradient statistic for the ratio: mean_abs, l2 or max_abs.")] = "mean_abs",
    factor: Annotated[str, typer.Option(help="Module factor for the ratio: all, A or B.")] = "all",
    k: Annotated[int, typer.Option(help="k of the SFS_k traces.")] = 2,
    interactive: Annotated[bool, typer.Option("--interactive/--static", help="Interactive plotly figures (plotly.js inlined once, ~4.7 MB); --static embeds the figures as SVG, no JavaScript.")] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Self-contained HTML report (works offline) with PNG/SVG figures, from recorded runs alone."""
    from lor2c_probe.commands.report import run_report

    run_report(runs, out, title=title, baseline=baseline, stat=stat, factor=factor, k=k, interactive=interactive, overwrite=overwrite)


@app.command(name="run")
@user_errors
def run_study(
    study: Annotated[Path, typer.Argument(help="A study file, e.g. analyses/fig7-gradient-ratio.toml (or just its name).")],
    model: ModelOpt = None,
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    epochs: Annotated[Opt[int], typer.Option(help="Override the study's epochs.")] = None,
    steps_per_epoch: Annotated[Opt[int], typer.Option(help="Override the study's steps per epoch (0 = full epochs).")] = None,
    batch_size: Annotated[Opt[int], typer.Option(help="Override the study's batch size.")] = None,
    max_eval_examples: Annotated[Opt[int], typer.Option(help="Override the study's eval size.")] = None,
    seeds: Annotated[Opt[str], typer.Option(help="Comma list of seeds replacing the study's.")] = None,
    out: Annotated[Opt[Path], typer.Option(help="Output folder \\[default: runs/<study name>].")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the study in --out: keep its completed runs, resume interrupted ones from their checkpoints, "
                                                "train the rest; a run whose configuration changed is refused (with --overwrite: moved aside and retrained).")] = False,
    interactive: Annotated[bool, typer.Option("--interactive/--static", help="Report with interactive plotly figures, or --static SVG figures and no JavaScript.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Reproduce a paper result end to end: train a study's runs, then write its report."""
    from lor2c_probe.commands.run import run_study as run

    overrides = {"model": model, "task": task, "data_dir": data_dir, "device": device, "precision": precision, "epochs": epochs,
                 "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "max_eval_examples": max_eval_examples}
    run(study, overrides, out=out, overwrite=overwrite, resume=resume, quiet=quiet, interactive=interactive, seeds=seeds)


@app.command()
@user_errors
def bench(
    out: Annotated[Path, typer.Option(help="The JSON file to write.")] = Path("bench.json"),
    shapes: Annotated[Opt[str], typer.Option(help="Model shapes: minilm (embedded, pretrained), roberta-base, llama-1b (random weights; llama-1b is a GPU shape), tiny, tiny-llama \\[default: minilm,roberta-base].")] = None,
    methods: Annotated[Opt[str], typer.Option(help="Methods; the first is the step-time baseline \\[default: lora,lor2c].")] = None,
    device: Annotated[Opt[str], typer.Option(help="cpu (default), cuda or auto.")] = None,
    precision: PrecisionOpt = None,
    rank: RankOpt = None,
    batch_size: Annotated[Opt[int], typer.Option(help="Examples per step \\[default: 16].")] = None,
    seq_len: Annotated[Opt[int], typer.Option(help="Tokens per example \\[default: 64].")] = None,
    reps: Annotated[Opt[int], typer.Option(help="Interleaved repetitions \\[default: 7].")] = None,
    steps: Annotated[Opt[int], typer.Option(help="Optimizer steps per repetition \\[default: 5].")] = None,
    warmup: Annotated[Opt[int], typer.Option(help="Untimed steps before the first repetition \\[default: 2].")] = None,
    memory_reps: Annotated[Opt[int], typer.Option(help="Child processes per peak-memory figure \\[default: 2].")] = None,
    svd_dims: Annotated[Opt[str], typer.Option(help="d of the factor-QR vs dense SVD table \\[default: 384,768,4096].")] = None,
    epoch_steps: Annotated[Opt[str], typer.Option(help="Epoch lengths to amortise the spectral probe over \\[default: 100,359].")] = None,
    smoke: Annotated[bool, typer.Option(help="Run everything once on the tiny shape (well under a minute); checks the suite, not the goals.")] = False,
    memory_only: Annotated[bool, typer.Option(help="Measure only peak memory, next to what `params --memory` plans (for big shapes).")] = False,
    durability: Annotated[bool, typer.Option(help="Measure only what fsync and the run lock cost (step-time ratio at the default flush interval).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Measure the performance goals (probe overhead, spectra, LoR2C vs LoRA, memory, recording) into one JSON."""
    from lor2c_probe.commands.bench import run_bench

    run_bench(dict(locals()))


def default_out(method: str) -> Path:
    return Path("runs") / f"{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def main() -> None:  # pragma: no cover - console entry for `python -m lor2c_probe`
    app(prog_name="lor2c-probe")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
