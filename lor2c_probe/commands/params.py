"""``lor2c-probe params``: adapter parameter counts from any architecture's shapes (bundled name or config.json)."""

from __future__ import annotations

import typer

from lor2c_probe.adapters import METHODS
from lor2c_probe.compare.params import count_table, shape_for
from lor2c_probe.errors import UserError


def run_params(arch: str, method: str | None, rank: int, merges: int = 0, injections: int = 0,
               target_modules: tuple[str, ...] | None = None, layers_path: str | None = None) -> None:
    methods = [method] if method else list(METHODS)
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown --method {m!r}; choose one of: {', '.join(METHODS)}")
    if injections < 0:
        raise UserError(f"--injections must be a non-negative integer; got {injections}")
    shape = shape_for(arch, target_modules, layers_path)
    counts = count_table(arch, methods, rank, merges, target_modules, layers_path)
    lora = ", ".join(f"{t.name} {t.fan_in}->{t.fan_out}" for t in shape.targets_of("lora")) or "none (pass --target-modules)"
    typer.echo(f"{arch}: d={shape.hidden_size}, layers={shape.num_layers}, rank={rank}" + (f", merges={merges}" if merges else "")
               + (f", injections={injections}" if injections else "") + f"; LoRA-family targets per block: {lora}")
    for m, n in counts.items():
        typer.echo(f"  {m:<20} {n:>14,}")
    if injections:
        typer.echo(f"injections do not change the count: each replaces a rank-{rank} LoR2C module (2rd) by LoRA of rank {rank // 2} "
                   "on q and v (2 x 2 (r/2) d)")


def _size(b: float) -> str:
    return f"{b / 2**30:10.2f} GiB" if b >= 2**30 else f"{b / 2**20:10.2f} MiB"


def run_memory_plan(arch: str, method: str | None, rank: int, *, batch_size: int, seq_len: int, precision: str, base_dtype: str, gpus: int,
                    target_modules: tuple[str, ...] | None = None, layers_path: str | None = None) -> None:
    from lor2c_probe.planning import CUDA_CONTEXT, GPU_SIZES_GB, MemoryPlan, arch_config, plan_memory, smallest_gpu

    if method is None:
        raise UserError("--memory plans one run: give --method")
    if gpus <= 0:
        raise UserError(f"gpus must be a positive integer; got {gpus}")
    plan = MemoryPlan(method=method, rank=rank, batch_size=batch_size, seq_len=seq_len, precision=precision, weights_dtype=base_dtype,
                      target_modules=target_modules, layers_path=layers_path)
    config = arch_config(arch)
    res = plan_memory(config, plan, gpus=gpus)
    weights_fp32 = base_dtype == "fp32"
    c = res["counts"]
    typer.echo(f"{arch} + {method} r={rank}: {c['total']:,} parameters ({c['adapters']:,} adapter, {c['head']:,} head); "
               f"micro-batch {batch_size} x {seq_len} tokens per GPU, {precision}, frozen weights {base_dtype}")
    for name, b in res["parts"].items():
        typer.echo(f"  {name:<46} {_size(b)}")
    typer.echo(f"  {'total per GPU':<46} {_size(res['total'])}  (x {gpus} GPU(s), global batch {res['global_batch']} per micro-step)")
    f = res["fit"]
    typer.echo(f"  activations per block: {f['layer_per_token'] / 1024:.1f} KiB per token + {max(0.0, f['layer_const']) / 2**20:.1f} MiB per step"
               + (" (mostly the half-precision weight copies autocast keeps for backward; --base-dtype bf16 avoids them)"
                  if base_dtype == "fp32" and precision != "fp32" else ""))
    typer.echo(f"  recorder on disk (rank 0): {res['record_bytes_per_1000_steps'] / 2**20:.1f} MiB per 1,000 logged steps "
               f"for {c['modules']} adapter modules (grads + activations, as measured by lor2c-probe bench)")
    typer.echo("  not in the total: the CUDA context (~0.5 GiB; the GPU check below adds it), allocator fragmentation, transient backward buffers")
    gb = smallest_gpu(res["total"])
    if gb is not None:
        typer.echo(f"  fits on {gb} GB GPUs, leaving {(gb * 10**9 - res['total'] - CUDA_CONTEXT) / 2**30:.1f} GiB "
                   "for fragmentation and transient buffers")
    else:
        typer.echo(f"  does not fit one {GPU_SIZES_GB[-1]} GB GPU: data parallelism replicates the weights; "
                   + ("--base-dtype bf16 halves them, " if weights_fp32 else "") + "a smaller micro-batch shrinks the activations, "
                   "and sharding the weights (FSDP) is not supported yet")
