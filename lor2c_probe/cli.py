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
    """Print a UserError as one line on stderr and exit 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: rows recorded so far are kept; continue with --resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


Method = typer.Option(help=f"Adapter method: {', '.join(METHODS)}.")


@app.command()
@user_errors
def train(
    method: Annotated[Optional[str], Method] = None,
    model: Annotated[Optional[str], typer.Option(help="HF hub id or local folder; default: the embedded all-MiniLM-L6-v2.")] = None,
    task: Annotated[Optional[str], typer.Option(help="rotten-tomatoes (default), sst2, mrpc, rte, cola, stsb, qnli, or custom.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with the official GLUE TSV files.")] = None,
    train_file: Annotated[Optional[Path], typer.Option(help="Your training data (CSV/TSV/JSONL), with --task custom.")] = None,
    eval_file: Annotated[Optional[Path], typer.Option(help="Your eval data; without it a seeded split of --train-file is used.")] = None,
    max_train_examples: Annotated[Optional[int], typer.Option(help="Use only the first N training examples.")] = None,
    max_eval_examples: Annotated[Optional[int], typer.Option(help="Use only the first N eval examples.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs [default: 3].")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap on optimizer steps per epoch, for quick runs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per micro-batch [default: 32].")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Micro-batches per optimizer step [default: 1].")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate [default: 5e-4].")] = None,
    rank: Annotated[Optional[int], typer.Option(help="Adapter rank r [default: 8].")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Adapter alpha; scaling s = alpha / r [default: 16].")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Adapter input dropout [default: set by --policy].")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW weight decay [default: set by --policy].")] = None,
    head_lr_scale: Annotated[Optional[float], typer.Option(help="Head lr = lr * this [default: set by --policy].")] = None,
    warmup_ratio: Annotated[Optional[float], typer.Option(help="Share of steps with linear warmup [default: 0.06].")] = None,
    max_grad_norm: Annotated[Optional[float], typer.Option(help="Clip the global gradient norm [default: 1.0]; 0 disables.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Truncate inputs to this many tokens [default: 128].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for init, dropout and data order [default: 17].")] = None,
    policy: Annotated[Optional[str], typer.Option(help="paper (default) or reference: the released code's optimizer quirks.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (default), cpu or cuda.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto, fp32, bf16 or fp16 (mixed precision needs CUDA).")] = None,
    flush_every: Annotated[Optional[int], typer.Option(help="Optimizer steps between writes of the run store [default: 50].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory [default: runs/<method>-<time>].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train one adapter method and record it into a run directory."""
    options = dict(locals())  # before any import below adds names
    from lor2c_probe.commands.train import TrainArgs, run_train

    for key in ("out", "overwrite", "resume", "quiet"):
        options.pop(key)
    run_train(TrainArgs(options=options, out=out, overwrite=overwrite, resume=resume, quiet=quiet))


@app.command()
@user_errors
def params(
    arch: Annotated[str, typer.Option(help="roberta-base, roberta-large, bert-base, minilm or llama-2-7b.")] = "roberta-base",
    method: Annotated[Optional[str], Method] = None,
    rank: Annotated[int, typer.Option(help="Adapter rank r.")] = 8,
) -> None:
    """Adapter parameter counts from bundled architecture shapes (no weights needed)."""
    from lor2c_probe.commands.params import run_params

    run_params(arch, method, rank)


def _reserved(name: str, issue: int, what: str) -> None:
    def command() -> None:
        typer.echo(f"error: `lor2c-probe {name}` is not available yet ({what}; tracked in issue {issue})", err=True)
        raise typer.Exit(2)

    command.__doc__ = f"{what} (coming: issue {issue})."
    app.command(name=name)(command)


_reserved("gradients", 3, "Gradient-flow probes and the LoR2C/LoRA gradient-ratio surface, paper Fig. 7")
_reserved("spectrum", 4, "Spectral probes and the low-rank evidence of the full-rank residual, paper Fig. 2")
_reserved("sfs", 5, "MergeLoR2C/InjectLoR2C/IMLoR2C with the SFS scheduler and SFS traces across events")
_reserved("report", 6, "Self-contained HTML figure report from recorded runs")


def default_out(method: str) -> Path:
    return Path("runs") / f"{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def main() -> None:  # pragma: no cover - console entry for `python -m lor2c_probe`
    app(prog_name="lor2c-probe")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
