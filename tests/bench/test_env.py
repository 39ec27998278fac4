"""bench.env: the NVIDIA driver version read from nvidia-smi, and None where it cannot be asked."""

from __future__ import annotations

import subprocess

from lor2c_probe.bench import env


def test_driver_is_the_first_gpu_line(monkeypatch) -> None:
    def fake(cmd, **kw):
        assert cmd[0] == "nvidia-smi" and "--query-gpu=driver_version" in cmd
        return subprocess.CompletedProcess(cmd, 0, stdout="580.159.03\n580.159.03\n", stderr="")

    monkeypatch.setattr(env.subprocess, "run", fake)
    assert env.nvidia_driver() == "580.159.03"


def test_driver_is_none_without_nvidia_smi(monkeypatch) -> None:
    def missing(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(env.subprocess, "run", missing)
    assert env.nvidia_driver() is None
    monkeypatch.setattr(env.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 9, stdout="", stderr="no devices"))
    assert env.nvidia_driver() is None
