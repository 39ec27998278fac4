"""How a run ends early: SIGTERM taken as an interrupt, and the manifest and one-line error of a run that diverged,
was interrupted or failed. The manifest never stays ``running``."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lor2c_probe.errors import Diverged, RunDiverged, RunStopped, StorageError, Terminated, UserError
from lor2c_probe.record.store import RunStore
from lor2c_probe.train import distributed
from lor2c_probe.train.checkpoint import newest_intact
from lor2c_probe.train.loop import Trainer
from lor2c_probe.train.manifest import now


def no_checkpoint(manifest: dict[str, Any], out: Path) -> str:
    """Why a run cannot be resumed, and what to do instead (never "use --resume")."""
    return (f"it has no usable checkpoint (the first is written at the end of epoch 0); start it again with "
            f"`lor2c-probe train ... --out {out} --overwrite` (the old run is moved aside)")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (torchrun, SLURM, docker stop) takes SIGINT's path: flush, mark the run interrupted, say how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored for the block (the main thread only can change handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stopped(e: BaseException, trainer: Trainer, store: RunStore, manifest: dict[str, Any], out: Path) -> BaseException:
    """Record why the run ended early in its manifest (after saving every row that can be saved) and return what
    to raise: a one-line RunStopped, or a bug's own exception (its traceback matters). The manifest never stays
    ``running``: even when the emergency flush fails (a full disk), it ends ``interrupted`` or ``failed`` with the reason."""
    step, epoch = trainer.state.step, trainer.state.epoch
    try:  # what the probes learned at their first step (e.g. tensors they could not place) belongs to every ending
        manifest.setdefault("recording", {})["callbacks"] = [x for cb in trainer.callbacks if (x := cb.manifest_entry()) is not None]
    except Exception:  # noqa: BLE001 - a callback broken by the failure must not hide the failure itself
        pass
    if not isinstance(e, Diverged) and trainer.diverged_step() is not None:
        # a NaN step before the flush that would have caught it broke something else first (e.g. an SVD of NaN weights)
        try:
            trainer.flush()  # writes the rows up to the bad step and raises Diverged
        except Diverged as d:
            e = d
        except BaseException:  # noqa: BLE001 - the divergence is still the cause to report
            e = Diverged(trainer.diverged_step() or step, epoch, "loss or gradient norm")
    if isinstance(e, Diverged):  # its flush already wrote the rows up to the bad step
        manifest["status"] = "diverged"
        manifest["diverged"] = {"step": e.step, "epoch": e.epoch, "what": e.what, "at": now()}
        message = (f"{e}; rows up to step {e.step} are kept in {out} (status: diverged); no checkpoint after the divergence "
                   f"was written. Try a lower --lr, clipping (--max-grad-norm 1) or --on-nonfinite skip-step")
        return _finish_stop(store, manifest, RunDiverged(message, e.exit_code))
    if isinstance(e, KeyboardInterrupt):
        reason, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("SIGINT (Ctrl-C)", 130)
        manifest["status"] = "interrupted"
    else:
        reason, code = (str(e), e.exit_code) if isinstance(e, UserError) else (f"{type(e).__name__}: {e}", 1)
        manifest["status"] = "failed"
    info: dict[str, Any] = {"reason": reason, "step": step, "epoch": epoch, "at": now()}
    try:
        trainer.flush()
    except BaseException as fe:  # noqa: BLE001 - whatever stops the emergency flush is recorded, not raised over the cause
        info["flush_error"] = f"{type(fe).__name__}: {fe}"
    manifest["interrupted" if manifest["status"] == "interrupted" else "failure"] = info
    _write_quietly(store, manifest)  # the status first: what follows reads checkpoints and may take a moment
    choice = newest_intact(out) if distributed.is_main() else None
    where = f"continue with `lor2c-probe train --resume --out {out}`" + (f" (from {choice.path.name})" if choice and choice.path else "")
    if choice is not None and choice.path is None:
        where = no_checkpoint(manifest, out).replace("it has", "the run has", 1)
    what = "interrupted by " + reason if manifest["status"] == "interrupted" else f"failed: {reason}"
    kept = "rows recorded so far are kept" if "flush_error" not in info else f"the last rows could not be saved ({info['flush_error']})"
    err = _finish_stop(store, manifest, RunStopped(f"run {out} {what} at step {step}; {kept}; {where}", code))
    return err if isinstance(e, (KeyboardInterrupt, UserError)) else e


def _write_quietly(store: RunStore, manifest: dict[str, Any]) -> None:
    try:
        store.write_manifest(manifest)
    except StorageError:
        pass  # _finish_stop tries again and says so


def _finish_stop(store: RunStore, manifest: dict[str, Any], err: RunStopped) -> RunStopped:
    try:
        store.write_manifest(manifest)
    except StorageError as we:
        return type(err)(f"{err} (and the manifest could not be updated: {we})", err.exit_code)
    return err
