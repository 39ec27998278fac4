"""lor2c-probe: gradient-flow and spectral analysis for parameter-efficient fine-tuning."""

__version__ = "0.1.0"
