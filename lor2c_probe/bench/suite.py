"""Run every measurement and evaluate the performance goals (issue 7's table) into one JSON-ready dict."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.env import environment


@dataclass(frozen=True)
class Goal:
    key: str
    measure: str
    target: float
    op: str  # "<=" or ">="
    compared_with: str

    def met(self, value: float) -> bool:
        return value <= self.target if self.op == "<=" else value >= self.target


GOALS = (
    Goal("grad_probe", "gradient probe on every step: step-time ratio vs no probe", 1.03, "<=", "Cockpit's cheapest tier: 1.5x"),
    Goal("grad_act_probes", "gradient + activation-gradient probes: step-time ratio", 1.05, "<=", "nothing records the latter"),
    Goal("spectral_amortized", "spectral probes at the default schedule (once per epoch), amortized", 1.02, "<=",
         "the LoR2C reference: a dense d x d SVD per module per epoch"),
    Goal("factor_qr_speedup", "adapter spectra from factors vs dense SVD (d = 768, r = 8)", 300.0, ">=", "WeightWatcher, the reference"),
    Goal("lor2c_vs_lora_step", "LoR2C train step vs PEFT LoRA q,v step (same model, batch, rank)", 1.00, "<=", "PEFT LoRA"),
    Goal("peak_memory", "peak memory with all probes vs without", 1.02, "<=", "-"),
    Goal("recording_volume", "recording volume, bytes per module per logged step", 1024.0, "<=", "-"),
    Goal("probes_and_sinks", "every probe + a live sink at the default flush interval, spectra amortized over an epoch: step-time "
         "ratio vs no probes", 1.05, "<=", "wandb.watch / TensorBoard histogram logging"),
    Goal("recording_volume_histograms", "recording volume with histograms, bytes per module per logged step", 1024.0, "<=", "-"),
    Goal("peer_grad_probe", "our gradient probe on every step: step-time ratio vs no monitoring (bench --peers)", 1.03, "<=", "-"),
    Goal("peer_vs_wandb_watch", "added step time of wandb.watch(log='gradients', log_freq=1) over ours (times cheaper)", 5.0, ">=",
         "wandb.watch"),
    Goal("peer_spectra_speedup", "our exact adapter spectra vs WeightWatcher on the same PEFT adapters (d = 768): time ratio", 100.0, ">=",
         "WeightWatcher"),
    Goal("peer_spectra_agreement", "max relative difference of the singular values, ours vs WeightWatcher", 1e-5, "<=", "WeightWatcher"),
    Goal("peer_lor2c_step", "LoR2C train step vs PEFT LoRA (bench --peers)", 1.00, "<=", "PEFT LoRA"),
    Goal("durability", "fsync of shards, manifests and checkpoints + the run lock: step-time ratio at flush every 50, "
         "amortized over an epoch", 1.01, "<=", "the same run without fsync or lock"),
)
GOAL_BY_KEY = {g.key: g for g in GOALS}
# The default `train` run on the embedded data: 11,477 training snippets at batch 32 = 359 steps per epoch.
DEFAULT_EPOCH_STEPS = 359


def resolve(cfg: BenchConfig) -> tuple[torch.device, str]:
    from lor2c_probe.train.build import resolve_device

    return resolve_device(cfg.device, cfg.precision)


def run_suite(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from lor2c_probe.bench.durability import measure_durability
    from lor2c_probe.bench.memory import measure_memory
    from lor2c_probe.bench.shapes import SHAPES
    from lor2c_probe.bench.spectra import spectral_probe_cost, svd_table
    from lor2c_probe.bench.steps import measure_steps

    device, precision = resolve(cfg)
    t_start = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "lor2c-probe bench", "environment": environment(device, precision),
                              "config": cfg.to_dict(), "shapes": {}}
    result["svd"] = []
    if cfg.peers:
        from lor2c_probe.bench.peers import run_peers

        result["peers"] = run_peers(cfg, device, precision, log)
        result["goals"] = goals_table(cfg, result)
        result["seconds"] = time.perf_counter() - t_start
        return result
    if cfg.probe_sets:
        from lor2c_probe.bench.probe_sets import measure_probe_sets

        for shape in cfg.shapes:
            log(f"{shape}: every probe and live sink vs no probes ({cfg.methods[0]}, flush every {cfg.probe_flush_every})")
            result["shapes"][shape] = {"description": SHAPES[shape].description, "probe_sets": measure_probe_sets(
                shape, cfg.methods[0], device, precision, rank=cfg.rank, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                flush_every=cfg.probe_flush_every, reps=cfg.reps, epoch_reps=max(2, cfg.spectra_reps // 2), epoch_steps=_epoch(cfg), log=log)}
        result["goals"] = goals_table(cfg, result)
        result["seconds"] = time.perf_counter() - t_start
        return result
    if not (cfg.memory_only or cfg.durability):
        if not cfg.update_spectra:
            log(f"factor-QR vs dense SVD on {device}")
            result["svd"] = svd_table(cfg, device, log)
        log(f"exact update spectra of PEFT's methods against a dense SVD on {device}")
        result["update_spectra"] = update_spectra_costs(cfg, log)
    for shape in () if cfg.update_spectra else cfg.shapes:
        log(f"{shape}: {SHAPES[shape].description}")
        if cfg.durability:
            result["shapes"][shape] = {"description": SHAPES[shape].description,
                                       "durability": measure_durability(cfg, shape, device, precision, _epoch(cfg), log)}
            continue
        if cfg.memory_only:
            memory = measure_memory(cfg, shape, device.type, precision, torch.get_num_threads(), log)
            result["shapes"][shape] = {"description": SHAPES[shape].description, "memory": memory}
            continue
        steps = measure_steps(cfg, shape, device, precision, log)
        step_s = {m: e["seconds_per_step"]["none"]["median"] for m, e in steps["methods"].items()}
        spectral = spectral_probe_cost(cfg, shape, device, precision, step_s, log)
        memory = measure_memory(cfg, shape, device.type, precision, torch.get_num_threads(), log)
        durability = measure_durability(cfg, shape, device, precision, _epoch(cfg), log)
        result["shapes"][shape] = {"description": SHAPES[shape].description, "steps": steps, "spectral_probe": spectral, "memory": memory,
                                   "durability": durability}
    result["goals"] = goals_table(cfg, result)
    result["seconds"] = time.perf_counter() - t_start
    return result


def update_spectra_costs(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Each PEFT method's exact ΔW spectrum by its route against a dense SVD, at d = 768 (the issue's yardstick)."""
    from lor2c_probe.bench.update_spectra import route_costs

    d = 768 if 768 in cfg.svd_dims else max(cfg.svd_dims)
    res = route_costs(d=d, rank=8, repeats=max(3, min(cfg.svd_reps, 9)))
    for name, m in res["methods"].items():
        log(f"  update spectrum d={d} {name:<8} {m['route_s'] * 1e3:8.3f} ms vs dense SVD {m['dense_svd_s'] * 1e3:8.2f} ms  "
            f"x{m['ratio']:.1f}  ({m['route']})")
    return res


def _epoch(cfg: BenchConfig) -> int:
    return DEFAULT_EPOCH_STEPS if DEFAULT_EPOCH_STEPS in cfg.epoch_steps else max(cfg.epoch_steps)


def goals_table(cfg: BenchConfig, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (goal, shape, method) with the measured value and whether it meets the goal."""
    rows: list[dict[str, Any]] = []

    def add(key: str, value: float | None, shape: str | None, method: str | None, detail: str = "") -> None:
        g = GOAL_BY_KEY[key]
        met = None if value is None or cfg.smoke else g.met(value)  # smoke timings on a tiny model say nothing
        rows.append({"goal": key, "measure": g.measure, "target": f"{g.op} {g.target:g}", "shape": shape, "method": method,
                     "value": value, "met": met, "detail": detail})

    if "peers" in result:
        _peer_goals(result["peers"], add)
    for row in result["svd"]:
        if (row["d"], row["r"]) == (768, 8):
            add("factor_qr_speedup", row["speedup"], None, None, "median times, float32")
    epoch = str(DEFAULT_EPOCH_STEPS) if DEFAULT_EPOCH_STEPS in cfg.epoch_steps else str(max(cfg.epoch_steps))
    base = cfg.methods[0]
    for shape, r in result["shapes"].items():
        if "probe_sets" in r:
            ps = r["probe_sets"]
            for v, e in ps["variants"].items():
                if v.startswith("all"):
                    add("probes_and_sinks", e["amortized_ratio"]["median"], shape, f"{ps['method']} {v}",
                        f"flush every {ps['flush_every']}; epoch of {ps['epoch_steps']} steps")
                if "recording" in e and v == "all":
                    add("recording_volume_histograms", e["recording"]["bytes_per_module_step"], shape, ps["method"], "every per-step table on disk")
            continue
        if "durability" in r:
            d = r["durability"]
            add("durability", d["amortized_ratio"], shape, d["method"], f"{d['probes']} probes; epoch of {d['epoch_steps']} steps")
        if "steps" not in r and "memory" not in r:  # --durability
            continue
        if "steps" not in r:  # --memory-only
            for m, mem in r["memory"].items():
                add("peak_memory", mem["ratio"], shape, m, mem["measure"])
            continue
        for m, e in r["steps"]["methods"].items():
            add("grad_probe", e["probe_overhead"]["grads"]["median"], shape, m, "median of paired per-repetition ratios")
            add("grad_act_probes", e["probe_overhead"]["grads+activations"]["median"], shape, m, "median of paired per-repetition ratios")
            add("spectral_amortized", r["spectral_probe"][m]["amortized_ratio"][epoch], shape, m, f"epoch of {epoch} steps")
            if base == "lora" and m == "lor2c":
                add("lor2c_vs_lora_step", e["ratio_to_baseline"]["median"], shape, m, "median of paired per-repetition ratios")
            add("peak_memory", r["memory"][m]["ratio"], shape, m, r["memory"][m]["measure"])
            add("recording_volume", e["recording"]["bytes_per_module_step"], shape, m, "grads + activation_grads + metrics on disk")
    return rows


def _peer_goals(peers: dict[str, Any], add: Callable[..., None]) -> None:
    for key, m in peers["monitors"].items():
        shape, method = key.split("|")
        ours = m["variants"].get("ours (grads probe, every step)")
        if ours:
            add("peer_grad_probe", ours["ratio_to_none"]["median"], shape, method, "median of paired per-repetition ratios")
        ov = m.get("ours_vs_watch_overhead")
        if ov:
            add("peer_vs_wandb_watch", ov["times_cheaper"], shape, method,
                f"added time: ours {ov['ours_added']:+.4f}, wandb.watch {ov['theirs_added']:+.4f} (ratio - 1, medians); {ov['note']}".rstrip("; "))
    sp = peers.get("spectra") or {}
    if sp.get("weightwatcher"):
        ww = sp["weightwatcher"]
        add("peer_spectra_speedup", ww.get("speedup"), None, "lora", f"{sp['adapters']} adapters, d = {sp['d']}, r = {sp['rank']}")
        add("peer_spectra_agreement", ww.get("max_relative_error"), None, "lora", ww.get("compared", ""))
    for shape, t in peers["train_step"].items():
        if "lor2c" in t["methods"] and t["baseline"] == "lora":
            add("peer_lor2c_step", t["methods"]["lor2c"]["ratio_to_baseline"]["median"], shape, "lor2c", "median of paired per-repetition ratios")


def format_goals(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'goal':<20} {'shape':<13} {'method':<12} {'value':>10}  {'target':<9} met"]
    for r in rows:
        v = "-" if r["value"] is None else (f"{r['value']:.0f}" if r["value"] >= 100 else f"{r['value']:.4f}")
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"{r['goal']:<20} {r['shape'] or '-':<13} {r['method'] or '-':<12} {v:>10}  {r['target']:<9} {met}")
    return "\n".join(lines)
