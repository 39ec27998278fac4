"""Moved to ``lor2c_probe.integrations.hf`` (kept so existing imports work)."""

from lor2c_probe.integrations.hf import ProbeCallback

__all__ = ["ProbeCallback"]
