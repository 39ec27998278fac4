"""What the benchmark suite measures and how often; validated up front so a long run never fails late."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lor2c_probe.config import ConfigError


def _pos(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


@dataclass(frozen=True)
class BenchConfig:
    shapes: tuple[str, ...] = ("minilm", "roberta-base")
    methods: tuple[str, ...] = ("lora", "lor2c")  # the first is the baseline of the step-time ratio
    device: str = "cpu"  # cpu | cuda | auto
    precision: str = "auto"  # auto: bf16 on a CUDA device that supports it, else fp32
    rank: int = 8
    batch_size: int = 16
    seq_len: int = 64
    warmup: int = 2  # untimed optimizer steps per trainer before the first repetition
    reps: int = 7  # interleaved repetitions
    steps: int = 5  # optimizer steps per repetition (then one flush of the run store)
    spectra_reps: int = 5
    memory_reps: int = 2
    memory_steps: int = 3
    svd_dims: tuple[int, ...] = (384, 768, 4096)
    svd_ranks: tuple[int, ...] = (8, 64)
    svd_reps: int = 20
    epoch_steps: tuple[int, ...] = (100, 359)  # amortise the spectral probe over epochs of these lengths
    smoke: bool = False
    memory_only: bool = False  # peak memory (and the planner's figure) only: for shapes too big to time on this machine
    durability: bool = False  # only the cost of fsync + the run lock (step-time ratio at the default flush interval)
    durability_flush_every: int = 50
    update_spectra: bool = False  # only each PEFT method's exact update-spectrum route against a dense SVD (d = 768)
    probe_sets: bool = False  # only every probe and live sink against no probes, at the default flush interval
    probe_flush_every: int = 50
    peers: bool = False  # only the comparison with the tools users would otherwise pick (bench/peers.py)
    peer_methods: tuple[str, ...] = ("lora", "lor2c")  # --peers: gradient monitoring on these methods
    step_methods: tuple[str, ...] = ("lora", "dora", "vera", "lor2c", "share-lor2c", "reslora-ms")  # --peers: train step, first = baseline
    peer_parts: tuple[str, ...] = ("monitors", "spectra", "train_step", "volume")  # --peers: which of its four parts to run
    volume_record_steps: int = 100  # --peers: steps actually recorded for the volume and analysis-time comparison ...
    volume_steps: int = 1200  # ... extended to this many steps

    def __post_init__(self) -> None:
        from lor2c_probe.adapters import METHODS
        from lor2c_probe.bench.shapes import SHAPES

        if not self.shapes:
            raise ConfigError("shapes must name at least one model shape")
        for s in self.shapes:
            if s not in SHAPES:
                raise ConfigError(f"unknown shape {s!r}; choose from: {', '.join(SHAPES)}")
        if len(self.methods) < 1 or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods must be distinct method names; got {','.join(self.methods)!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; choose from: {', '.join(METHODS)}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"device must be cpu, cuda or auto; got {self.device!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16; got {self.precision!r}")
        if sum((self.memory_only, self.durability, self.update_spectra, self.probe_sets, self.peers)) > 1:
            raise ConfigError("--memory-only, --durability, --update-spectra, --probe-sets and --peers each measure one thing; pick one")
        bad = [p for p in self.peer_parts if p not in ("monitors", "spectra", "train_step", "volume")]
        if bad or not self.peer_parts:
            raise ConfigError(f"peer parts must be among monitors, spectra, train_step, volume; got {','.join(self.peer_parts)!r}")
        for name in ("peer_methods", "step_methods"):
            for m in getattr(self, name):
                if m not in METHODS:
                    raise ConfigError(f"unknown method {m!r} in {name}; choose from: {', '.join(METHODS)}")
        for name in ("rank", "batch_size", "seq_len", "reps", "steps", "spectra_reps", "memory_reps", "memory_steps", "svd_reps",
                     "durability_flush_every", "probe_flush_every", "volume_record_steps", "volume_steps"):
            _pos(name, getattr(self, name))
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer; got {self.warmup!r}")
        if self.reps < 2:
            raise ConfigError(f"reps must be at least 2 to give a spread; got {self.reps}")
        for name in ("svd_dims", "svd_ranks", "epoch_steps"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"{name} must not be empty")
            for v in values:
                _pos(name, v)

    @classmethod
    def smoke_preset(cls, **overrides: Any) -> BenchConfig:
        """Everything once, on the tiny random shape: checks the suite runs, in well under a minute."""
        base = cls(shapes=("tiny",), warmup=1, reps=2, steps=2, spectra_reps=1, memory_reps=1, memory_steps=1,
                   svd_dims=(768,), svd_ranks=(8,), svd_reps=3, smoke=True, durability_flush_every=5,
                   probe_flush_every=3, volume_record_steps=4, volume_steps=40)
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
