"""scripts/gpu_check.sh (issue 22's prepared device script) and its helper scripts/random_model.py, on the CPU:
the script parses, runs a chosen step and records it; the random-shape folder loads through `--model` like a real one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_env_step_records_the_machine(tmp_path: Path) -> None:
    venv = ROOT / ".venv" / "bin" / "python"
    if not venv.exists():  # without .venv the script runs python3, which need not hold torch on this machine
        import pytest

        pytest.skip("no .venv here (scripts/install.sh makes it)")
    env = {**os.environ, "STEPS": "env", "GPU_CHECK_SMOKE": "1"}
    r = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert steps == [{"step": "env", "rc": 0, "seconds": steps[0]["seconds"]}]  # only the chosen step ran
    info = json.loads((tmp_path / "env.json").read_text())
    import torch

    assert info["versions"]["torch"] == torch.__version__
    assert info["cuda_available"] == torch.cuda.is_available()
    assert len(info["git_commit"] or "") in (0, 40)  # bench.env.environment: the same record every bench JSON carries


def test_random_model_folder_loads_as_the_shape(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("random_model", ROOT / "scripts" / "random_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    folder = mod.save_random_model("minilm", tmp_path / "m", seed=3)

    import torch

    from lor2c_probe.models import load_model
    from lor2c_probe.planning import ARCH_CONFIGS

    model, tok, backbone = load_model(str(folder), num_labels=2, problem_type="single_label_classification")
    want = ARCH_CONFIGS["minilm"][1]
    assert model.config.hidden_size == want["hidden_size"] and backbone.num_layers == want["num_hidden_layers"]
    batch = tok(["a fine film", "a dull one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 2)
    # the same seed saves the same weights: the random model is reproducible
    m2, _, _ = load_model(str(mod.save_random_model("minilm", tmp_path / "m2", seed=3)), num_labels=2,
                          problem_type="single_label_classification")
    p1 = dict(model.named_parameters())
    assert all(torch.equal(p, p1[name]) for name, p in m2.named_parameters())
