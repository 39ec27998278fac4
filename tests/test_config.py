from __future__ import annotations

import pytest

from lor2c_probe.config import AdapterConfig, DataConfig, RunConfig, TrainConfig, resolve_policy
from lor2c_probe.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rank": 0}, "rank must be a positive integer; got 0"),
        ({"rank": -3}, "rank must be a positive integer; got -3"),
        ({"alpha": 0}, "alpha must be a positive number; got 0"),
        ({"alpha": -1.0}, "alpha must be a positive number; got -1.0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\); got 1.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\); got -0.1"),
        ({"method": "nosuch"}, "unknown method 'nosuch'; choose one of: lora, lor2c"),
    ],
)
def test_adapter_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AdapterConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"weight_decay": -1}, "weight_decay must be a non-negative number"),
        ({"grad_accum": 0}, "grad_accum must be a positive integer"),
    ],
)
def test_train_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_data_config_errors():
    with pytest.raises(ConfigError, match="unknown task 'imdb'"):
        DataConfig(task="imdb")
    with pytest.raises(ConfigError, match="task 'custom' needs --train-file"):
        DataConfig(task="custom")
    with pytest.raises(ConfigError, match="use them with --task custom"):
        DataConfig(task="sst2", train_file="x.csv")
    with pytest.raises(ConfigError, match="unknown policy"):
        RunConfig(policy="fast")


def test_round_trip_through_dict():
    cfg = RunConfig(model="x", adapter=AdapterConfig(rank=4), train=TrainConfig(max_grad_norm=None), policy="reference")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_policies_fill_only_unset_fields():
    values, sources = resolve_policy("reference", "lor2c", dropout=None, weight_decay=0.2, head_lr_scale=None)
    assert values == {"dropout": 0.1, "weight_decay": 0.2, "head_lr_scale": 0.5}
    assert sources == {"dropout": "policy", "weight_decay": "user", "head_lr_scale": "policy"}
    values, _ = resolve_policy("paper", "lora", dropout=None, weight_decay=None, head_lr_scale=None)
    assert values == {"dropout": 0.05, "weight_decay": 0.0, "head_lr_scale": 1.0}
