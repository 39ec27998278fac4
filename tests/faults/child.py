"""Run the lor2c-probe CLI with one fault injected: ``python -m tests.faults.child POINT N -- CLI ARGS...``.

POINT names where the process kills itself with SIGKILL (as ``kill -9`` would) on the N-th time it gets there:
  step        mid-step, after a micro-batch's backward and before the optimizer step
  shard       mid-write of a Parquet shard: half its bytes in the temporary file, not yet renamed
  manifest    mid-write of manifest.json (same)
  checkpoint  mid-checkpoint: adapter tensors written, optimizer state not yet
  merge       mid-merge: the model's structure changed, the event row not yet recorded
  slow        no fault; every optimizer step takes N ms longer (time to send a signal mid-run)
  none        no fault (a reference run in a separate process)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


class Trigger:
    """Counts arrivals at a fault point; the N-th one is fatal."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    @property
    def next_is_fatal(self) -> bool:
        return self.seen + 1 == self.n

    def __call__(self) -> None:
        self.seen += 1
        if self.seen == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


def _half_write(path: Path, data: bytes) -> None:
    with open(path.with_name(f".{path.name}.tmp"), "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())


def install(point: str, n: int) -> None:
    hit = Trigger(n)
    if point == "step":
        from lor2c_probe.train.loop import Trainer

        emit = Trainer._emit

        def _emit(self, name):  # noqa: ANN001
            if name == "after_backward":
                hit()
            return emit(self, name)

        Trainer._emit = _emit
    elif point in ("shard", "manifest"):
        from lor2c_probe.record import store

        original = store.write_atomic

        def write_atomic(path, data):  # noqa: ANN001
            if (point == "shard") == str(path).endswith(".parquet"):
                if hit.next_is_fatal:
                    _half_write(Path(path), data)
                hit()
            return original(path, data)

        store.write_atomic = write_atomic
        if point == "manifest":
            import json

            store.write_json_atomic = lambda path, obj: write_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())
    elif point == "checkpoint":
        from lor2c_probe.train import checkpoint

        original = checkpoint.save_adapters

        def save_adapters(*a, **k):  # noqa: ANN002, ANN003
            original(*a, **k)
            hit()

        checkpoint.save_adapters = save_adapters
    elif point == "merge":
        from lor2c_probe.structure import ops

        original = ops.merge

        def merge(*a, **k):  # noqa: ANN002, ANN003
            key = original(*a, **k)
            hit()
            return key

        ops.merge = merge
    elif point == "slow":
        import time

        from lor2c_probe.train.loop import Trainer

        step = Trainer.train_step

        def train_step(self, *a, **k):  # noqa: ANN001, ANN002, ANN003
            time.sleep(n / 1000)
            return step(self, *a, **k)

        Trainer.train_step = train_step
    elif point != "none":
        raise SystemExit(f"unknown fault point {point!r}")


def main() -> None:
    point, n, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: child POINT N -- CLI ARGS"
    install(point, int(n))
    from lor2c_probe.cli import app

    app(args, prog_name="lor2c-probe")


if __name__ == "__main__":
    main()
