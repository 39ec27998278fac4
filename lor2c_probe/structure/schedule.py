"""When merges and injections happen (decisions.md item 6). Pure functions, no torch.

Epoch mode: merge events at the end of epochs j * ceil(E / (4M)), j = 1..M (1-based epoch numbers);
injections likewise with J. Step mode: events at optimizer step round(j * T / (4M)). Every event must
fall in the first half of training. A merge and an injection due at the same event: the merge happens
first and the injection one optimizer step later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lor2c_probe.errors import ConfigError

MODES = ("epoch", "step")


@dataclass(frozen=True)
class Event:
    kind: str  # "merge" or "inject"
    index: int  # j, 1-based
    epoch: int | None  # epoch mode: at the end of this 1-based epoch
    step: int | None  # step mode: after this optimizer step


def event_epochs(epochs: int, count: int) -> list[int]:
    if count == 0:
        return []
    interval = math.ceil(epochs / (4 * count))
    return [j * interval for j in range(1, count + 1)]


def event_steps(total_steps: int, count: int) -> list[int]:
    return [round(j * total_steps / (4 * count)) for j in range(1, count + 1)] if count else []


def check_counts(merges: int, injections: int, num_layers: int) -> None:
    """Fail early when M or J cannot happen on a model with ``num_layers`` blocks (and say why)."""
    for name, v in (("merges", merges), ("injections", injections)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{name} must be a non-negative integer; got {v!r}")
    L = num_layers
    if merges > L - 1:
        raise ConfigError(f"--merges {merges} is more than possible: {L} blocks give {L} LoR2C modules, so at most {L - 1} merges")
    if injections > L:
        raise ConfigError(f"--injections {injections} is more than possible: {L} blocks give at most {L} modules to replace")
    if merges + injections > L - 1:
        raise ConfigError(
            f"--merges {merges} + --injections {injections} is more than possible: each event consumes one of the {L} "
            f"LoR2C modules and at least one must remain, so M + J <= {L - 1}"
        )


def plan_events(mode: str, *, merges: int, injections: int, epochs: int, total_steps: int) -> list[Event]:
    """All events in order; raises if one would fall after the first half of training."""
    if mode not in MODES:
        raise ConfigError(f"unknown schedule {mode!r}; choose one of: {', '.join(MODES)}")
    events: list[Event] = []
    for kind, count in (("merge", merges), ("inject", injections)):
        if mode == "epoch":
            for j, e in enumerate(event_epochs(epochs, count), start=1):
                if e > epochs / 2:
                    raise ConfigError(
                        f"{kind} event {j} of {count} would fall at the end of epoch {e} of {epochs}, after the first half of "
                        f"training; use fewer {kind}s, more --epochs, or --schedule step"
                    )
                events.append(Event(kind, j, e, None))
        else:
            for j, s in enumerate(event_steps(total_steps, count), start=1):
                if s < 1 or s > total_steps / 2:
                    raise ConfigError(f"{kind} event {j} of {count} would fall at step {s} of {total_steps}; too few steps for {count} {kind}s")
                events.append(Event(kind, j, None, s))
    order = {"merge": 0, "inject": 1}
    return sorted(events, key=lambda e: ((e.epoch if mode == "epoch" else e.step), order[e.kind]))
