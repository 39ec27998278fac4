"""LLaMA-style decoders (a tiny LlamaForCausalLM with grouped-query attention: 4 query heads, 2 key/value
heads, so v_proj is 16 wide while d = 32): LoR2C's forward against the hand-written formula, LoRA on
q_proj/v_proj, the gradient and spectral probes against brute force, and the causal eval loss.
Tolerances: float32, rtol 1e-5 / atol 1e-6 for forwards; the probes' own tolerances (1e-5, 1e-4)."""

from __future__ import annotations

import math

import pytest
import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.config import AdapterConfig, DataConfig
from lor2c_probe.data.load import load_task
from lor2c_probe.errors import UserError
from lor2c_probe.models import find_layers, load_model
from lor2c_probe.probes.spectral import discover
from lor2c_probe.train.batches import collate, encode_causal
from tests.probes.test_spectral import _close, _run, _sigmas

TOL = dict(rtol=1e-5, atol=1e-6)


def _setup(model_dir, method, rank=4, dropout=0.0):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(model_dir), num_labels=2, problem_type="x", causal=True)
    cfg = AdapterConfig(method=method, rank=rank, alpha=2.0 * rank, dropout=dropout)
    model = get_method(method).attach(model, bb, cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    return model.train(), tok, bb, cfg


def _batch(tok, tiny_alpaca, n=3):
    ex, *_ = load_task(DataConfig(task="alpaca", train_file=str(tiny_alpaca["train"])))
    enc = encode_causal(tok, ex.take(list(range(n))), 96)
    return enc, collate(enc, list(range(n)))


def test_backbone_reads_d_from_the_config_not_from_v_proj(tiny_llama):
    model, _, bb = load_model(str(tiny_llama), num_labels=2, problem_type="x", causal=True)
    _, layers = find_layers(model)
    assert (bb.hidden_size, bb.num_layers, bb.layers_path, bb.causal) == (32, 3, "model.layers", True)
    assert layers[0].self_attn.v_proj.out_features == 16 != bb.hidden_size  # GQA


@pytest.mark.parametrize("method", ["lor2c", "share-lor2c", "full-rank-residual"])
def test_lor2c_forward_on_a_decoder_equals_the_formula(tiny_llama, tiny_alpaca, method):
    """Each block's output = F_i(h_i) + s * M_i h_i, where h_i is the raw residual stream entering block i
    (before its input RMSNorm) and F_i the bare block run on the same inputs with the hooks removed."""
    model, tok, bb, cfg = _setup(tiny_llama, method)
    _, batch = _batch(tok, tiny_alpaca)
    batch.pop("labels")
    _, layers = find_layers(model)
    seen: dict[int, tuple] = {}
    hooks = [layer.register_forward_pre_hook(lambda m, a, k, i=i: seen.__setitem__(i, (a, k)), with_kwargs=True) for i, layer in enumerate(layers)]
    outs: dict[int, torch.Tensor] = {}
    hooks += [layer.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o)) for i, layer in enumerate(layers)]
    model.eval()
    with torch.no_grad():
        model(**batch, use_cache=False)  # no KV cache: re-running a block must not extend it
        for h in hooks:
            h.remove()
        bank = model.lor2c
        bank.detach()
        try:
            for i, layer in enumerate(layers):
                args, kwargs = seen[i]
                h = args[0]
                path = bank.paths[str(i)]
                M = path.W if method == "full-rank-residual" else path.B @ (bank.shared_A if method == "share-lor2c" else path.A)
                want = layer(*args, **kwargs) + cfg.scaling * h @ M.T
                torch.testing.assert_close(outs[i], want, **TOL)
                assert not torch.allclose(outs[i], layer(*args, **kwargs))  # the path really added something
        finally:
            bank._install()


def test_lora_targets_q_proj_and_v_proj_with_the_gqa_width(tiny_llama):
    model, _, bb, cfg = _setup(tiny_llama, "lora")
    shapes = {n.split(".lora_")[0].rsplit(".", 1)[-1] + n.split(".lora_")[1][0]: tuple(p.shape)
              for n, p in model.named_parameters() if ".lora_" in n and ".layers.0." in n}
    assert shapes == {"q_projA": (4, 32), "q_projB": (32, 4), "v_projA": (4, 32), "v_projB": (16, 4)}
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lm_head" in n)  # the LM head stays frozen
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("method", ["lor2c", "lora"])
def test_weight_and_feature_spectra_on_a_decoder_equal_dense_svds(tiny_llama, tiny_alpaca, method):
    model, tok, bb, cfg = _setup(tiny_llama, method, rank=3)
    enc, _ = _batch(tok, tiny_alpaca)
    rows = _run(model, bb, cfg, enc)
    weights, feats = _sigmas(rows, "weights"), _sigmas(rows, "features")
    mods = discover(model)
    assert {m.module for m in mods} == ({f"lora.{i}.{p}" for i in range(3) for p in "qv"} if method == "lora" else {f"lor2c.{i}" for i in range(3)})
    captured: dict[str, list[torch.Tensor]] = {m.module: [] for m in mods}
    _, layers = find_layers(model.base_model.model if method == "lora" else model)
    hs = []
    for m in mods:
        target = layers[m.block] if m.block is not None else model.get_submodule(m.path)
        hs.append(target.register_forward_pre_hook(lambda mod, a, k, key=m.module: captured[key].append(a[0] if a else k["hidden_states"]), with_kwargs=True))
    batch = collate(enc, list(range(len(enc))))
    batch.pop("labels")
    mask = batch["attention_mask"].bool()
    assert bool((~mask).any())  # padding present and excluded
    model.eval()
    with torch.no_grad():
        model(**batch)
    for h in hs:
        h.remove()
    for m in mods:
        B, A = (m.B, m.A) if m.tuner is None else (m.tuner.lora_B["default"].weight, m.tuner.lora_A["default"].weight)
        dense = (B @ A).detach().double()
        _close(weights[m.module], torch.linalg.svdvals(cfg.scaling * dense))
        X = captured[m.module][0][mask].double()
        _close(feats[m.module], torch.linalg.svdvals(cfg.scaling * X @ dense.T))


@pytest.mark.parametrize("method,marker", [("lor2c", "lor2c."), ("lora", "lora_")])
def test_gradient_probe_on_a_decoder_equals_brute_force(tiny_llama, tiny_alpaca, tmp_path, method, marker):
    from lor2c_probe.config import RunConfig, TrainConfig
    from lor2c_probe.train.session import run_training
    from tests.probes.test_gradients import Snapshot, _compare

    snap = Snapshot()
    cfg = RunConfig(model=str(tiny_llama), adapter=AdapterConfig(method=method, rank=4, alpha=8.0, dropout=0.1),
                    train=TrainConfig(epochs=1, batch_size=16, lr=5e-3, device="cpu", flush_every=2, max_length=96, max_grad_norm=1e-2),
                    data=DataConfig(task="alpaca", train_file=str(tiny_alpaca["train"])))
    run_training(cfg, tmp_path / "r", progress=False, callbacks=[snap])
    _compare(tmp_path / "r", snap, marker, 1e-2)


def test_causal_eval_is_the_token_weighted_mean_loss(tiny_llama, tiny_alpaca):
    from lor2c_probe.config import TrainConfig
    from lor2c_probe.data.tasks import TASKS
    from lor2c_probe.record.store import RunStore
    from lor2c_probe.train.loop import Trainer

    model, tok, bb, cfg = _setup(tiny_llama, "lor2c")
    enc, _ = _batch(tok, tiny_alpaca, n=7)
    trainer = Trainer(model=model, cfg=TrainConfig(eval_batch_size=3, device="cpu"), spec=TASKS["alpaca"], train=enc, eval=enc,
                      store=RunStore.__new__(RunStore), device=torch.device("cpu"), precision="fp32", param_marker="", progress=False)
    got = trainer.evaluate()
    # Brute force: each example alone, summed token losses over all predicted tokens.
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(enc)):
            ids = torch.tensor([enc.features["input_ids"][i]])
            logits = model(input_ids=ids).logits[0, :-1].double()
            target = ids[0, 1:]
            total += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            count += len(target)
    assert got["loss"] == pytest.approx(total / count, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_encoder_with_alpaca_is_refused_and_a_decoder_classifies(tiny_llama, tiny_models):
    model, tok, bb = load_model(str(tiny_llama), num_labels=2, problem_type="single_label_classification")
    assert type(model).__name__ == "LlamaForSequenceClassification" and not bb.causal
    assert model.config.pad_token_id == tok.pad_token_id  # the classifier pools the last non-pad token
    with pytest.raises(UserError, match="--task alpaca trains a causal LM; bert is an encoder"):
        load_model(str(tiny_models["bert"]), num_labels=2, problem_type="x", causal=True)


def test_missing_layer_stack_suggests_the_override(tiny_llama):
    model, _, _ = load_model(str(tiny_llama), num_labels=2, problem_type="x", causal=True)
    del model.model.layers
    with pytest.raises(UserError, match=r"cannot find a stack of repeated transformer blocks in LlamaForCausalLM; pass --layers-path"):
        find_layers(model)
