"""The StructureCallback: at each scheduled event, score the LoR2C modules fresh, decide, change the
model and optimizer, and log the event (every candidate's score under both policies, the rule, the
parameter counts, the training loss over a window before and after)."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from lor2c_probe.analysis.spectral import head_share, sfs
from lor2c_probe.structure import ops
from lor2c_probe.structure.policy import POLICIES, StructurePolicy, choose_injection, choose_merge, survivor
from lor2c_probe.structure.schedule import Event
from lor2c_probe.train import distributed
from lor2c_probe.train.hooks import TrainerCallback, TrainState


def adapter_param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and ("lor2c." in n or ".lora_" in n))


class StructureCallback(TrainerCallback):
    def __init__(self, *, events: list[Event], mode: str, policy: StructurePolicy, policy_name: str, scorer: Any,
                 freeze: bool, loss_window: int) -> None:
        self.events, self.mode, self.policy, self.policy_name = events, mode, policy, policy_name
        other = "reference" if policy_name == "paper" else "paper"
        self.other_name, self.other = other, POLICIES[other]
        self.scorer, self.freeze, self.window = scorer, freeze, loss_window
        self._deferred: list[tuple[Event, int]] = []  # (injection, optimizer step after which it happens)
        self._losses: deque[tuple[int, torch.Tensor]] = deque(maxlen=loss_window)
        self._open: list[tuple[dict[str, Any], list[torch.Tensor]]] = []  # events waiting for their after-window
        self.applied: list[dict[str, Any]] = []  # the changes made, in order: replayed on resume
        self.done = 0

    # -- when --------------------------------------------------------------------------------------------
    def on_step_end(self, state: TrainState) -> None:
        # 1. account this step's loss: it belongs to the after-window of earlier events and the before-window of later ones
        loss = state.loss.detach() if state.loss is not None else None
        if loss is not None:
            for row, after in self._open:
                if len(after) < self.window:
                    after.append(loss)
            self._losses.append((state.step, loss))
        self._emit_ready(state, final=False)
        # 2. then change the structure: injections postponed by a merge, and events due after this step
        due_now = [e for e, at in self._deferred if at <= state.step]
        self._deferred = [(e, at) for e, at in self._deferred if at > state.step]
        for e in due_now:
            self._apply(e, state)
        if self.mode == "step":
            self._due([e for e in self.events if e.step == state.step], state)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.mode == "epoch":
            self._due([e for e in self.events if e.epoch == state.epoch + 1], state)

    def on_train_end(self, state: TrainState) -> None:
        self._emit_ready(state, final=True)

    def _due(self, due: list[Event], state: TrainState) -> None:
        merged_now = False
        for e in due:  # already ordered: merges first
            if e.kind == "inject" and merged_now:
                self._deferred.append((e, state.step + 1))  # one optimizer step after the merge
            else:
                self._apply(e, state)
                merged_now = merged_now or e.kind == "merge"

    # -- what ----------------------------------------------------------------------------------------------
    def _scores(self, model: torch.nn.Module) -> dict[tuple[str, str], dict[str, float]]:
        """{(source, score): {module: value}} for the LoR2C modules, from spectra computed now."""
        spectra = self.scorer.spectra_now(model, sources=("weights", "features"))
        out: dict[tuple[str, str], dict[str, float]] = {}
        for (source, module), sigma in spectra.items():
            if not module.startswith("lor2c."):
                continue
            for pol in (self.policy, self.other):
                fn = sfs if pol.score == "sfs" else head_share
                out.setdefault((source, pol.score + f"_{pol.k}"), {})[module] = fn(sigma, pol.k)
            out.setdefault((source, f"sfs_{self.policy.k}"), {})[module] = sfs(sigma, self.policy.k)
        return out

    def _apply(self, event: Event, state: TrainState) -> None:
        model, bank = state.model, ops.find_bank(state.model)
        scores = self._scores(model)
        active = scores[(self.policy.source, f"{self.policy.score}_{self.policy.k}")]
        other = scores[(self.other.source, f"{self.other.score}_{self.other.k}")]
        before = adapter_param_count(model)
        detail: dict[str, Any] = {"policy": self.policy_name, "policy_fields": self.policy.to_dict(), "event_index": event.index,
                                  "emulate_reference_bugs": self.freeze}
        if event.kind == "merge":
            chosen = distributed.broadcast_object(choose_merge(active, self.policy))  # decided on rank 0
            if chosen is None:
                return self._skipped(state, event, "no adjacent pair of LoR2C modules left")
            (a, b), table = chosen
            keep = distributed.broadcast_object(survivor(a, b, scores[(self.policy.source, f"sfs_{self.policy.k}")], self.policy))
            ka, kb, kk = (x.split(".", 1)[1] for x in (a, b, keep))
            key = ops.merge(bank, ka, kb, kk, state.optimizer, freeze=self.freeze)
            self.applied.append({"kind": "merge", "a": ka, "b": kb, "keep": kk, "freeze": self.freeze})
            modules, result = [a, b], f"lor2c.{key}"
            detail.update(rule=f"merge the adjacent pair with the smallest summed {self.policy.score}_{self.policy.k} ({self.policy.source})",
                          kept_factors_of=keep, merge_keep=self.policy.merge_keep)
        else:
            chosen = distributed.broadcast_object(choose_injection(active, self.policy))
            if chosen is None:
                return self._skipped(state, event, "no unmerged LoR2C module left")
            m, table = chosen
            ops.inject(bank, m.split(".", 1)[1], model, state.optimizer, freeze=self.freeze, layers_path=self.scorer.layers_path)
            self.applied.append({"kind": "inject", "key": m.split(".", 1)[1], "freeze": self.freeze})
            modules, result = [m], f"lora.{m.split('.', 1)[1]}"
            detail.update(rule=f"inject into the module with the {'smallest' if self.policy.inject_rule == 'min' else 'largest'} "
                               f"{self.policy.score}_{self.policy.k} ({self.policy.source})")
        for c in table:
            c[f"score_{self.policy_name}"] = c.pop("score")
            c[f"score_{self.other_name}"] = float(sum(other[x] for x in c["modules"]))
        state.extras["structure_version"] = state.extras.get("structure_version", 0) + 1
        detail.update(result=result, candidates=table, params_before=before, params_after=adapter_param_count(model))
        window = [loss for _, loss in self._losses]
        detail["loss_before"] = window
        self._open.append(({"step": state.step, "epoch": state.epoch, "kind": event.kind, "modules": ",".join(modules), "detail": detail}, []))
        self.done += 1

    def _skipped(self, state: TrainState, event: Event, why: str) -> None:
        row = {"step": state.step, "epoch": state.epoch, "kind": f"{event.kind}_skipped", "modules": "",
               "detail": {"reason": why, "event_index": event.index, "loss_before": [], "policy": self.policy_name}}
        self._open.append((row, []))

    def _emit_ready(self, state: TrainState, final: bool) -> None:
        keep, rows = [], []
        for row, after in self._open:
            if len(after) >= self.window or final:
                d = row.pop("detail")
                before = d.pop("loss_before")
                vals = torch.stack(before + after).float().cpu().numpy() if before or after else np.array([])  # one transfer per event
                d["loss_before_mean"] = float(vals[: len(before)].mean()) if before else None
                d["loss_after_mean"] = float(vals[len(before):].mean()) if after else None
                d["loss_window_steps"] = [len(before), len(after)]
                rows.append({**row, "detail_json": json.dumps(d, default=float)})
            else:
                keep.append((row, after))
        self._open = keep
        if rows:
            state.record("events", rows)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: applied changes, postponed injections, open loss windows (as floats)."""
        floats = lambda ts: [float(t) for t in ts]  # noqa: E731 - one sync per checkpoint
        open_rows = []
        for row, after in self._open:
            d = dict(row["detail"])
            d["loss_before"] = floats(d["loss_before"])
            open_rows.append({"row": {**row, "detail": d}, "after": floats(after)})
        return {
            "applied": self.applied,
            "deferred": [[e.__dict__, at] for e, at in self._deferred],
            "open": open_rows,
            "losses": [[step, float(t)] for step, t in self._losses],
            "structure_version": len(self.applied),
        }

    def load_state_dict(self, d: dict[str, Any], device: torch.device) -> None:
        tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
        self.applied = list(d["applied"])
        self._deferred = [(Event(**e), at) for e, at in d["deferred"]]
        self._open = []
        for item in d["open"]:
            row = item["row"]
            row["detail"]["loss_before"] = [tensor(v) for v in row["detail"]["loss_before"]]
            self._open.append((row, [tensor(v) for v in item["after"]]))
        self._losses = deque(((s, tensor(v)) for s, v in d["losses"]), maxlen=self.window)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": "structure",
            "table": "events",
            "mode": self.mode,
            "policy": self.policy_name,
            "policy_fields": self.policy.to_dict(),
            "emulate_reference_bugs": self.freeze,
            "events": [replace(e).__dict__ for e in self.events],
        }
