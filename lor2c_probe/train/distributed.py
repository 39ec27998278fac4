"""Data-parallel training when launched by ``torchrun`` or ``accelerate launch`` (DDP, one process per device).

Both launchers set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; with WORLD_SIZE > 1 the
session joins the process group (gloo on the CPU, NCCL on CUDA). Conventions:
- ``--batch-size`` is the global batch: each optimizer step splits it across ranks (``np.array_split``).
- Every rank computes identical decisions from identical replicas, but merges/injections are still
  decided on rank 0 and broadcast, so float noise can never make replicas diverge.
- Only rank 0 writes the run store, checkpoints and the report.
Outside a launch every function here is a no-op, so single-process code paths are unchanged.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch

from lor2c_probe.config import flatten
from lor2c_probe.errors import UserError


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device_type: str) -> None:
    """Join the launcher's process group (once)."""
    import torch.distributed as dist

    if launched_world_size() > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        # Leave the group before the interpreter tears down: a process group still alive at exit aborts the
        # process ("terminate called without an active exception") once its peer has gone.
        atexit.register(_leave)


def finish() -> None:
    """End of a completed run: wait for every rank, then leave the group together. A rank that tears down while
    its peer still finishes (rank 0 writes the manifest last) could abort at exit in gloo's threads."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def enabled() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if enabled() else 0


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if enabled() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 of the group; outside one (before joining, after ``finish``), the launcher's RANK says."""
    return rank() == 0 if enabled() else os.environ.get("RANK", "0") == "0"


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not enabled():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (stays on its device; no host synchronisation with NCCL)."""
    if enabled():
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def check_agreement(what: str, obj: dict[str, Any]) -> None:
    """Fail on every rank, naming the differing fields, when ranks hold different ``obj``."""
    if not enabled():
        return
    import torch.distributed as dist

    everyone: list[Any] = [None] * world()
    dist.all_gather_object(everyone, obj)
    ref = flatten(everyone[0])
    for r, other in enumerate(everyone[1:], start=1):
        flat = flatten(other)
        diff = sorted(k for k in set(ref) | set(flat) if ref.get(k) != flat.get(k))
        if diff:
            shown = ", ".join(f"{k} ({ref.get(k)!r} on rank 0, {flat.get(k)!r} on rank {r})" for k in diff[:3])
            raise UserError(f"ranks disagree on the {what}: {shown}; launch every rank with the same arguments")


def raise_from_main(err: str | None) -> None:
    """A check run on rank 0 only (e.g. the output folder): its error, if any, stops every rank."""
    err = broadcast_object(err)
    if err:
        raise UserError(err)
