"""lor2c-probe: gradient-flow and spectral analysis for parameter-efficient fine-tuning.

The public API (``docs/api.md``), imported lazily so that reading runs never imports torch:

- ``Recorder``: attach the probes to any model and optimizer, in any training loop;
- ``read_table``, ``read_manifest``: a recorded run's tables and manifest;
- ``ProbeCallback`` (Hugging Face ``Trainer``) and ``LightningProbe`` (PyTorch Lightning): the integrations.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Recorder": "lor2c_probe.recorder",
    "RecorderConfig": "lor2c_probe.recorder",
    "read_table": "lor2c_probe.record.store",
    "read_manifest": "lor2c_probe.record.store",
    "ProbeCallback": "lor2c_probe.integrations.hf",
    "LightningProbe": "lor2c_probe.integrations.lightning",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lor2c_probe' has no attribute {name!r}")
